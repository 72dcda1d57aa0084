"""The results document and every output made from it (pure data in, text or HTML out).

- The results model: ``document`` (the document's TypedDicts, one per object of
  ``schema/results.schema.json``) and ``results`` (the dataclasses a run fills,
  and the figures every output shows: growth, measured, failed verdicts, totals).
- The results file: ``validation`` (the schema and the one check every document
  read passes), ``results_file`` (reading whole, writing), ``stream`` (reading in
  bounded memory), ``spool`` (a session's tests kept on disk as they finish) and
  ``merge`` (shards into one document).
- Runs over time: ``baselines`` (saved runs, per machine) and ``compare`` (a run
  against a baseline, under tolerances).
- ``ledger``: the session ledger's data (what outlived the tests that made it),
  merged across workers and shards, and its summary lines.
- The outputs: ``html`` (rendering), ``html_view`` (what the report shows),
  ``charts`` (its SVG charts), ``html_ledger`` (its resources section),
  ``history`` (saved runs over time), ``terminal`` (the summary) and ``outputs``
  (everything a run writes at its end, behind one call for the plugin).
"""
