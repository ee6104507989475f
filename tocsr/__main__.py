from tocsr.cli import main

main()
