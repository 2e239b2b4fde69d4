"""A failed `status` query in the run checks reports the run's history, readably."""

from pathlib import Path

from temporalio.client import WorkflowHistory

from tests.invariant import _event_line

HISTORY = Path(__file__).parent / "histories" / "sensor-and-a2a-2026-11-30.json"


def test_a_history_reads_as_one_line_per_event_with_what_each_command_was() -> None:
    history = WorkflowHistory.from_json("run", HISTORY.read_text())
    lines = [_event_line(e) for e in history.events]
    assert lines[0] == "1 WORKFLOW_EXECUTION_STARTED"
    assert lines[3].startswith("4 WORKFLOW_TASK_COMPLETED (core flags [")
    assert lines[4] == '5 MARKER_RECORDED [\'{"id":"flow-run-2026-11-30","deprecated":false}\']'
    assert lines[5] == "6 UPSERT_WORKFLOW_SEARCH_ATTRIBUTES ['TemporalChangeVersion']"
    assert lines[6] == "7 ACTIVITY_TASK_SCHEDULED prepare_flow"
    assert len(lines) == len(history.events)
