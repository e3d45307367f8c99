"""The leaderboard (`python -m benchmarks.leaderboard`): `jobs` lists, runs, skips and retries
every (method, dataset, category, seed); `aggregate` reads the finished job workdirs, `stats`
computes the numbers, `tables` writes CSV and Markdown, `plots` the PNGs, beside the published
numbers of `published/<method>.py`. docs/leaderboard.md."""
