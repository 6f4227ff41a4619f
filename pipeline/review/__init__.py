"""Human review: people label a sample of a run's tasks (the Self-Instruct paper's three questions) and rate
base vs student answers blind (the paper's A-D scale), in a small local web app.

labels.py    reviews.jsonl, the one label store (page and --import write it; every stage reads it)
sample.py    the seeded, stratified sample and each reviewer's queue (with an overlap for agreement)
pairs.py     the blind A/B items of an `evaluate` output (which answer is which stays on the server)
stats.py     the paper's table with Wilson intervals, kappa between people and against judges,
             the min-score threshold table, pairwise win rate
importer.py  labels made elsewhere (`review --import`)
filters.py   `--reviewed-only` / `--drop-rejected` for export and train
app.py       the Starlette app behind `selfinstruct review` (static/review.html is its one page)
"""
