from tocsr.app.cli import main

main()
