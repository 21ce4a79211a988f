"""The reports of SPEC section 7, each a pure function of a `FleetProjection`: the meta report
(the one every other report reads), kill list, lineage, forensics, PR comment, LP email."""
