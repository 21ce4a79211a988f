"""The supervisor's pure rules: decisions, kill list, commands, allocation, execution.

Nothing here reads a clock, a broker or the environment: state and time come in
as arguments and events go out as return values, so the Faust agents, the
projections and a what-if replay all run the very same functions.
"""
