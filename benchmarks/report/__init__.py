"""The static HTML report of a leaderboard workdir (docs/report.md): `content` gathers what it shows
from the jobs, `pages` and `charts` render it, `build` writes the folder, `browser` opens pages in
headless Chromium for the tests."""
