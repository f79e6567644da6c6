"""The Dagster UI as a user meets it: `dagster dev` started the way the README says
(`server.py`), and the user's steps in a real browser, Debian's chromium driven by Playwright
(`pages.py`). The browser test and the docs' screenshots (`screenshots.py`) share them."""
