from tests.search.conftest import space  # noqa: F401  (the synthetic space fixture)
