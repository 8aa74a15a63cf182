"""participants.json: which addresses of a run are the attackers (the events name addresses only)."""

import pytest

from fl.attacks.behaviours import behaviour_for
from fl.simulation.recorder import PARTICIPANTS, RunRecorder, read_participants
from fl.simulation.rounds import SimClient


def clients(voter_attack: str, roles: str = "both") -> list[SimClient]:
    flags = [False, True, False, True]
    addresses = [f"0x{i:040x}" for i in range(4)]
    bloc = [a for a, f in zip(addresses, flags) if f]
    return [SimClient(i, addresses[i], None, flags[i], behaviour_for(flags[i], roles, "label_flip", voter_attack, bloc))
            for i in range(4)]


def test_record_participants__malicious_addresses_and_roles_read_back(tmp_path):
    recorder = RunRecorder(tmp_path / "run", {"simulation": {}})
    recorder.record_participants(clients("colluding_bloc"))

    rows = read_participants(tmp_path / "run")

    assert [r["address"] for r in rows if r["malicious"]] == ["0x" + "0" * 39 + "1", "0x" + "0" * 39 + "3"]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["voter_attack"] for r in rows] == [None, "colluding_bloc", None, "colluding_bloc"]
    assert all(r["malicious_proposer"] == r["malicious"] for r in rows)


def test_record_participants__proposer_only_attackers_vote_honestly(tmp_path):
    recorder = RunRecorder(tmp_path / "run", {"simulation": {}})
    recorder.record_participants(clients("lazy", roles="proposer"))

    rows = read_participants(tmp_path / "run")

    assert [r["malicious_voter"] for r in rows] == [False] * 4
    assert [r["voter_attack"] for r in rows] == [None] * 4


def test_read_participants__older_run_folder__clear_error(tmp_path):
    RunRecorder(tmp_path / "run", {"simulation": {}})

    with pytest.raises(FileNotFoundError, match=PARTICIPANTS):
        read_participants(tmp_path / "run")
