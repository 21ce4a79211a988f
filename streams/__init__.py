"""Stream processing: the Faust app, its agents and the runtime around them."""
