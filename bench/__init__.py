"""Switchboard's benchmark suite: ``python -m bench`` (see ``python -m bench --help``).

Every scenario runs against Switchboard and, in the same run, against two baselines: the openai SDK
streaming straight from the fake upstream (the floor) and ``gr.load_chat`` pointed at the same fake with
its defaults. Results go to ``docs/benchmarks/`` as a Markdown table and PNG plots.
"""
