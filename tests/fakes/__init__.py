"""Fakes of the outside world (exchanges) that tests drive real clients against."""
