"""The test suite is a package on purpose: tests share helpers by absolute imports (`tests.support.*`,
`tests.integration.helpers`), and test modules and conftest.py files with the same name in different
folders (unit/inventory and integration/inventory, e2e/conftest.py and integration/conftest.py) get
distinct module names (pytest's default "prepend" import mode puts the repository root on sys.path).
Switching to rootdir-based imports (--import-mode=importlib) would need the helpers installed or put
on the path another way, for no gain. docs/ is not a package: its example is loaded from its file."""
