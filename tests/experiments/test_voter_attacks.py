"""fl.experiments.voter_attacks on hand-made rounds with known answers (issue 12's voter attacks)."""

import dataclasses
import json
import math

import pytest

from fl.attacks.behaviours import behaviour_for
from fl.experiments import voter_attacks as va
from fl.simulation.recorder import RunRecorder
from fl.simulation.rounds import RoundRecord, SimClient

S = 4 * va.TOKEN  # voter stake
ADDRESSES = [f"0x{i:040x}" for i in range(8)]


def round_(number, proposals, ballots, settled=(), voters=None, removed=()):
    """A condensed round: proposals [proposer, accepted, accepts]; ballots {voter: mask}."""
    return {"round": number, "proposals": [list(p) for p in proposals], "revealed": len(ballots),
            "voters": sorted(voters if voters is not None else ballots), "ballots": sorted([v, m] for v, m in ballots.items()),
            "settled": sorted(list(s) for s in settled), "removed": sorted(removed)}


# ---------------------------------------------------------------------------- slash formula


def test_expected_voter_slash__spec_worked_example_and_edges():
    assert va.expected_voter_slash(S, 2, 9, True) == 888888888888888889  # SPEC: ceil(4 x 2 / 9)
    assert va.expected_voter_slash(S, 9, 9, True) == S
    assert va.expected_voter_slash(S, 0, 9, True) == 0
    assert va.expected_voter_slash(S, 0, 0, True) == 0  # no proposal: a revealed voter wins
    assert va.expected_voter_slash(S, 0, 0, False) == S


def test_disagreements__counts_bits_against_the_decision_only_within_P():
    r = round_(1, [(0, 1, 3), (1, 0, 1), (2, 1, 3)], {5: 0b111})
    assert va.accepted_mask(r) == 0b101
    assert va.disagreements(0b111, r) == 1
    assert va.disagreements(0b010, r) == 3
    assert va.disagreements(0b1101, r) == 0  # a bit beyond P is no proposal


# ---------------------------------------------------------------------------- bloc


def test_bloc_round__bloc_majority_accepts_poison_rejects_honest_and_slashes_honest_voters():
    bloc = frozenset({5, 6, 7})
    # proposal 0 honest (by 0), proposal 1 poisoned (by 7); honest voters 1, 2 accept 0 only; the bloc the reverse
    r = round_(3, [(0, 0, 2), (7, 1, 3)], {1: 0b01, 2: 0b01, 5: 0b10, 6: 0b10, 7: 0b10},
               settled=[(1, va.VOTER, S, 0), (2, va.VOTER, S, 0), (5, va.VOTER, 0, S), (0, va.PROPOSER, 8 * va.TOKEN, 0)])
    b = va.bloc_round(r, bloc)
    assert (b.revealed, b.bloc_revealed, b.bloc_share) == (5, 3, 0.6)
    assert b.bloc_holds_half and b.bloc_majority
    assert (b.poisoned, b.poisoned_accepted, b.honest_proposals, b.honest_rejected) == (1, 1, 1, 1)
    assert b.flipped == 2 and b.poisoned_accepted_against_honest == 1
    assert b.honest_accept_share_on_poison == 0.0
    assert (b.honest_voters_slashed, b.honest_voters_slashed_on_flipped, b.honest_voter_slash_units) == (2, 2, 2 * S)


def test_bloc_round__minority_bloc_changes_nothing_an_honest_split_voter_is_not_blamed_on_the_bloc():
    bloc = frozenset({6, 7})
    # honest voters 1-4: three accept the honest proposal 0, voter 4 rejects it (noise); all reject poison 1
    r = round_(1, [(0, 1, 3), (7, 0, 2)], {1: 0b01, 2: 0b01, 3: 0b01, 4: 0b00, 6: 0b10, 7: 0b10},
               settled=[(4, va.VOTER, S // 2, 0), (6, va.VOTER, S, 0), (7, va.VOTER, S, 0)])
    b = va.bloc_round(r, bloc)
    assert not b.bloc_holds_half and not b.bloc_majority
    assert (b.poisoned_accepted, b.honest_rejected, b.flipped, b.poisoned_accepted_against_honest) == (0, 0, 0, 0)
    assert (b.honest_voters_slashed, b.honest_voters_slashed_on_flipped, b.honest_voter_slash_units) == (1, 0, S // 2)


def test_bloc_round__poison_the_honest_majority_accepts_too_is_not_blamed_on_the_bloc():
    # the paper's rule: honest voters cast one verdict for all proposals, here accept-all
    r = round_(1, [(0, 1, 3), (7, 1, 3)], {1: 0b11, 2: 0b11, 7: 0b10})
    b = va.bloc_round(r, frozenset({7}))
    assert (b.poisoned_accepted, b.poisoned_accepted_against_honest, b.flipped) == (1, 0, 0)
    assert b.honest_accept_share_on_poison == 1.0


def test_bloc_round__exactly_half_blocks_an_honest_proposal_by_a_tie_but_cannot_accept_poison():
    bloc = frozenset({6, 7})
    r = round_(1, [(0, 0, 2), (7, 0, 2)], {1: 0b01, 2: 0b01, 6: 0b10, 7: 0b10})
    b = va.bloc_round(r, bloc)
    assert b.bloc_holds_half and not b.bloc_majority
    assert (b.poisoned_accepted, b.honest_rejected, b.flipped) == (0, 1, 1)


def test_summarise_bloc_run__splits_by_bloc_share_and_reports_removals():
    participants = [{"index": i, "malicious_voter": i >= 5} for i in range(8)]
    rounds = [
        round_(1, [(0, 0, 2), (7, 1, 3)], {1: 0b01, 2: 0b01, 5: 0b10, 6: 0b10, 7: 0b10}),  # bloc majority
        round_(2, [(0, 1, 3), (6, 0, 1)], {1: 0b01, 2: 0b01, 3: 0b01, 6: 0b10}),  # bloc a quarter
        round_(3, [(0, 1, 3)], {1: 1, 2: 1, 3: 1}, removed=[5, 6, 7]),
        round_(4, [(1, 1, 3)], {0: 1, 2: 1, 3: 1}),
    ]
    s = va.summarise_bloc_run({"rounds": rounds}, participants)
    assert s["rounds_bloc_half_or_more"] == [1] and s["rounds_bloc_majority"] == [1]
    assert s["poisoned_accepted"] == {"below_half": 0, "half_or_more": 1}
    assert s["poisoned_proposals"] == {"below_half": 1, "half_or_more": 1}
    assert s["honest_rejected"] == {"below_half": 0, "half_or_more": 1}
    assert s["rounds_poison_accepted"] == [1]
    assert (s["bloc_removed"], s["bloc_removal_rounds"]) == (3, [3, 3, 3])
    assert s["rounds_bloc_active"] == 2  # rounds 1 and 2; removed at the start of round 3
    assert s["bloc_share_mean"] == pytest.approx((0.6 + 0.25) / 2)
    assert s["bloc_share_max"] == 0.6


# ---------------------------------------------------------------------------- lazy


def test_lazy_checks__slash_against_ceil_formula_and_silence():
    lazy = frozenset({5, 6})
    third = va.ceil_div(S, 3)
    r = round_(2, [(0, 1, 3), (1, 1, 3), (2, 0, 0)], {3: 0b011, 4: 0b011, 5: 0b111}, voters=[3, 4, 5, 6],
               settled=[(5, va.VOTER, third, 10), (6, va.VOTER, S, 0)])
    checks = va.lazy_checks([r], lazy, S)
    assert [(c.voter, c.revealed, c.disagreed, c.expected, c.slashed) for c in checks] == [
        (5, True, 1, 1333333333333333334, third), (6, False, 3, S, S)]
    assert all(c.slash_matches and c.loses_iff_disagrees for c in checks)


def test_lazy_checks__a_wrong_slash_is_flagged():
    r = round_(1, [(0, 1, 2), (1, 1, 2)], {3: 0b11, 5: 0b11}, settled=[(5, va.VOTER, 1, 0)])
    (check,) = va.lazy_checks([r], frozenset({5}), S)
    assert check.disagreed == 0 and check.expected == 0
    assert not check.slash_matches and not check.loses_iff_disagrees


def test_stakes_over_time__every_role_counts():
    rounds = [round_(1, [], {}, settled=[(5, va.VOTER, S, 0), (6, va.VOTER, 0, 3)]),
              round_(2, [], {}, settled=[(5, va.PROPOSER, 8 * va.TOKEN, 0)])]
    series = va.stakes_over_time(rounds, [5, 6], 64 * va.TOKEN)
    assert series == {5: [60 * va.TOKEN, 52 * va.TOKEN], 6: [64 * va.TOKEN + 3] * 2}


def test_tail_mean__last_values_without_nan():
    assert va.tail_mean([1.0, 2.0, math.nan, 4.0], last=3) == 3.0
    assert math.isnan(va.tail_mean([]))


# ---------------------------------------------------------------------------- events and files


def events_of_one_round(accepts_of_poison=1):
    a = ADDRESSES
    return [
        {"event": "RoundOpened", "args": {"roundId": 1}},
        {"event": "ParticipantSelected", "args": {"roundId": 1, "client": a[0], "role": va.PROPOSER}},
        {"event": "ParticipantSelected", "args": {"roundId": 1, "client": a[7], "role": va.PROPOSER}},
        *({"event": "ParticipantSelected", "args": {"roundId": 1, "client": a[i], "role": va.VOTER}} for i in (1, 2, 6)),
        {"event": "ParticipantRemoved", "args": {"roundId": 1, "client": a[3], "role": va.VOTER}},
        {"event": "VoteRevealed", "args": {"roundId": 1, "voter": a[1], "acceptMask": 1}},
        {"event": "VoteRevealed", "args": {"roundId": 1, "voter": a[2], "acceptMask": 1}},
        {"event": "VoteRevealed", "args": {"roundId": 1, "voter": a[6], "acceptMask": 2}},
        {"event": "ProposalSettled", "args": {"roundId": 1, "proposer": a[7], "index": 1, "accepted": False,
                                              "accepts": accepts_of_poison, "revealed": 3}},
        {"event": "ProposalSettled", "args": {"roundId": 1, "proposer": a[0], "index": 0, "accepted": True,
                                              "accepts": 2, "revealed": 3}},
        {"event": "ParticipantSettled", "args": {"roundId": 1, "client": a[6], "role": va.VOTER, "won": False,
                                                 "slashed": S, "rewarded": 0}},
        {"event": "RoundSettled", "args": {"roundId": 1, "revealedVotes": 3}},
        {"event": "UnassignedSwept", "args": {"amount": 5}},
        {"event": "RoundOpened", "args": {"roundId": 2}},  # never settled: left out
    ]


def test_condense_events__one_round_in_on_chain_order():
    (r,) = va.condense_events(events_of_one_round(), {a: i for i, a in enumerate(ADDRESSES)})
    assert r == {"round": 1, "proposals": [[0, 1, 2], [7, 0, 1]], "revealed": 3, "voters": [1, 2, 6],
                 "ballots": [[1, 1], [2, 1], [6, 2]], "settled": [[6, va.VOTER, S, 0]], "removed": [3]}


def test_condense_events__accepts_that_contradict_the_ballots__error():
    with pytest.raises(ValueError, match="proposal 1 has 2 accepts"):
        va.condense_events(events_of_one_round(accepts_of_poison=2), {a: i for i, a in enumerate(ADDRESSES)})


def make_run(folder, voter_attack, seed=0):
    """A one-round run folder as `ape run simulate` writes it (config, participants, events, metrics)."""
    config = {"simulation": {"voter_attack": voter_attack, "review": "cosine", "malicious_ratio": 0.45, "seed": seed,
                             "malicious_roles": "both", "attack": "label_flip", "task": "lending",
                             "clients": 8, "rounds": 1, "stake": 64.0},
              "protocol": {"voter_stake": 4.0}}
    recorder = RunRecorder(folder, config)
    flags = [i >= 5 for i in range(8)]
    bloc = [a for a, f in zip(ADDRESSES, flags) if f]
    recorder.record_participants(
        SimClient(i, ADDRESSES[i], None, flags[i], behaviour_for(flags[i], "both", "label_flip", voter_attack, bloc))
        for i in range(8))
    values = {f.name: 0 for f in dataclasses.fields(RoundRecord)}
    values.update(round=1, decision="accepted", test_auroc=0.7, global_model_hash="0x" + "ab" * 32)
    recorder.record_round(RoundRecord(**values), events_of_one_round())
    (folder / "summary.json").write_text("{}\n")


def test_main__condenses_events_and_renders_the_section(tmp_path):
    results = tmp_path / "results"
    make_run(results / "voter-attacks" / "colluding_bloc" / "ratio-0.45" / "seed-0", "colluding_bloc")
    make_run(results / "voter-attacks" / "lazy" / "ratio-0.45" / "seed-0", "lazy")
    baseline = results / "lending" / "fedavg-clean" / "ratio-0" / "seed-0"
    baseline.mkdir(parents=True)
    (baseline / "metrics.csv").write_text("round,test_auroc\n1,0.5\n2,0.75\n")

    va.main(["--results", str(results)])

    summary = json.loads((results / "voter-attacks" / "summary.json").read_text())
    bloc, lazy = sorted(summary, key=lambda r: r["voter_attack"])
    assert bloc["poisoned_accepted"] == {"below_half": 0, "half_or_more": 0}
    assert bloc["rounds_bloc_half_or_more"] == []  # one of three revealed voters
    assert bloc["fedavg_clean_auroc_last50"] == 0.625 and bloc["auroc_last50"] == 0.7
    # voter 6 is lazy here: ballot 0b10 (not all-accept, but the events say so) is wrong on both proposals
    assert lazy["lazy_voter_rounds"] == 1 and lazy["disagreed"] == 1
    assert lazy["slash_matches_formula"] == 1 and lazy["loses_iff_disagrees"] == 1
    assert lazy["disagreed_net_negative"] == 1 and lazy["mean_stake_by_round"] == [(64 * 3 - 4) / 3]
    text = (results / "voter-attacks" / "summary.md").read_text()
    assert text.startswith("## Voter attacks (issue 12)")
    assert "0 of 1 (met)" in text
    assert va.render_voter_attacks_section(results) == text
    assert va.render_voter_attacks_section(results / "voter-attacks") == text


def test_render__poison_accepted_below_half__target_not_met():
    run = {"voter_attack": "colluding_bloc", "review": "cosine", "ratio": 0.3, "seed": 1, "folder": "voter-attacks/x",
           "malicious_roles": "both", "attack": "label_flip",
           "rounds": 100, "rounds_requested": 100, "rounds_bloc_active": 20, "bloc_share_mean": 0.3,
           "bloc_share_max": 0.4, "rounds_bloc_half_or_more": [], "rounds_bloc_majority": [],
           "poisoned_accepted": {"below_half": 2, "half_or_more": 0},
           "poisoned_accepted_against_honest": {"below_half": 2, "half_or_more": 0},
           "poisoned_proposals": {"below_half": 10, "half_or_more": 0},
           "honest_rejected": {"below_half": 0, "half_or_more": 0}, "flipped_proposals": {"below_half": 2, "half_or_more": 0},
           "honest_voters_slashed_on_flipped": {"below_half": 3, "half_or_more": 0},
           "honest_voter_slash_tokens": {"below_half": 1.0, "half_or_more": 0.0}, "rounds_poison_accepted": [4, 9],
           "honest_accept_share_on_poison_max": 0.25, "bloc_removed": 15, "bloc_size": 15, "bloc_removal_rounds": [20], "auroc_last50": 0.7,
           "fedavg_clean_auroc_last50": 0.75}
    aggregate = {**run, "review": "aggregate", "poisoned_accepted": {"below_half": 5, "half_or_more": 0},
                 "poisoned_accepted_against_honest": {"below_half": 0, "half_or_more": 0}}
    text = va.render_summary([aggregate, run])
    assert "2 of 10 (NOT met)" in text
    assert "accepting any poisoned proposal in these runs: 0.25)" in text
    assert "**Review `aggregate`, 1 runs:** poisoned proposals accepted while the bloc held less than half: 5 of 10, of which 0" in text
    assert "poison accepted in rounds 4, 9" in text
    assert ("ape run simulate --malicious-ratio 0.3 --malicious-roles both --attack label_flip "
            "--voter-attack colluding_bloc --review cosine --seed 1 --output results/voter-attacks/x") in text


def test_render__no_runs__says_so():
    assert "No voter-attack run recorded yet" in va.render_summary([])


def test_bloc_round__honest_voters_tied_reject_so_a_bloc_rejection_flips_nothing():
    bloc = frozenset({6})
    r = round_(1, [(0, 0, 1)], {1: 0b1, 2: 0b0, 6: 0b0})  # honest 1 of 2 accept: a tie rejects
    assert va.bloc_round(r, bloc).flipped == 0
