"""`duly simulate`: what-if runs of a process change or a staffing plan on the real engine.

A scenario (definitions/scenarios/*.yaml, see `scenario`) names the processes, the arrivals,
the team and the reps' habits; `fit` fits those habits from the live store's facts; `runner`
runs the scenario R times on the time-skipping server into throw-away stores; `measure` reads
each run's weekly figures and their band across runs; `report` prints them.
"""
