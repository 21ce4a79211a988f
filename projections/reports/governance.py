"""The kill list and the lineage tree as text for a terminal: the same sections the meta
report carries (`kill_list_view`, `lineage_view`), drawn for people."""

from __future__ import annotations

from projections.reports.meta import KillHistoryRow, KillListView, LineageView
from schemas.envelope import format_utc


def _history_line(row: KillHistoryRow) -> str:
    until = f" until {format_utc(row.until)}" if row.until else ""
    trust = "" if row.signature_verified else f"  NOT BELIEVED: {row.problem}"
    reason = f": {row.reason}" if row.reason else ""
    return (
        f"{format_utc(row.ts)}  {row.type:<16} {row.target_type:<14} {row.target}"
        f"  by {row.actor} ({row.source}){until}{reason}{trust}"
    )


def kill_list_text(view: KillListView) -> str:
    """What is stopped now, then the audit trail, oldest first."""
    lines = ["stopped now:"]
    stopped = [*view.agents, *view.strategy_classes]
    lines += [f"  {kill.description}" for kill in stopped] or ["  nobody"]
    lines += ["", f"history ({len(view.history)} facts; unverified ones changed nothing):"]
    lines += [f"  {_history_line(row)}" for row in view.history] or ["  none"]
    return "\n".join(lines) + "\n"


def lineage_text(view: LineageView) -> str:
    """The family tree, founders first, each child under its parent."""
    lines: list[str] = []
    drawn: set[str] = set()

    def draw(agent: str, depth: int, seen: frozenset[str]) -> None:
        drawn.add(agent)
        node = view.nodes[agent]
        spawned = f"  spawned {format_utc(node.spawned_at)}" if node.spawned_at else ""
        why = f": {node.reason}" if node.reason else ""
        group = node.strategy_class or "-"
        lines.append(f"{'  ' * depth}{'└─ ' if depth else ''}{agent} [{group}]{spawned}{why}")
        for child in node.children:
            if child not in seen:  # a cycle in forged lineage must not loop forever
                draw(child, depth + 1, seen | {child})

    for root in view.roots:
        draw(root, 0, frozenset({root}))
    for agent in sorted(view.nodes):  # left: agents in a cycle, which no founder leads to
        if agent not in drawn:
            draw(agent, 0, frozenset({agent}))
    return "\n".join(lines) + "\n" if lines else "no agents yet\n"

