"""Voter attacks of issue 12, measured from recorded runs: a colluding bloc and lazy voters.

Target (issue 12): "A colluding voting bloc below half the voters cannot get a poisoned proposal
accepted (measure at 0.3 and 0.45); a lazy voter loses stake whenever it disagrees with the
majority."

A run folder of ``ape run simulate`` holds config.json, participants.json (who is malicious),
metrics.csv and events.jsonl. The raw events stay local (results/.gitignore), so
``condense_run`` keeps what this analysis needs in ``voter_attack.json`` (committed): per round
the proposals in on-chain order with their decisions, every revealed ballot, every participant's
settlement and the clients removed; clients by their index in participants.json. Everything
below ``condense_events`` is a pure function of that file, so the summary is rebuilt from the
committed files alone.

    python -m fl.experiments.voter_attacks --results results

condenses every run below results/voter-attacks that still has its events and writes
results/voter-attacks/summary.{json,md}. ``render_voter_attacks_section(results_dir)`` returns the
report's "Voter attacks (issue 12)" section (markdown).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

CONDENSED_FILE = "voter_attack.json"
FORMAT = 1
VOTER_ATTACKS_DIR = "voter-attacks"
BASELINE = Path("lending") / "fedavg-clean" / "ratio-0"  # FedAvg without attackers, per seed
LAST_ROUNDS = 50  # the report's "last half of the rounds"
PROPOSER, VOTER = 1, 2  # fl.protocol.votes.Role
TOKEN = 10**18


# ----------------------------------------------------------------------------------------
# Condensing the events (one run)


def condense_events(events: Iterable[Mapping], index_of: Mapping[str, int]) -> list[dict]:
    """Per round, from the contracts' events: ``proposals`` ([proposer, accepted 0/1, accepts] in
    on-chain order), ``revealed`` (R), ``voters`` (drawn), ``ballots`` ([voter, accept mask] of each
    revealed voter), ``settled`` ([client, role, slashed, rewarded] in token units), ``removed``.
    Clients by ``index_of[address]``. ``ValueError`` if the events contradict each other (a
    proposal's accept count differs from its revealed ballots, a settled round without its
    RoundSettled)."""
    rounds: dict[int, dict] = defaultdict(lambda: {"proposals": {}, "voters": [], "ballots": [], "settled": [],
                                                    "removed": [], "revealed": None})
    for event in events:
        name, args = event["event"], event["args"]
        if "roundId" not in args:
            continue
        r = rounds[int(args["roundId"])]
        if name == "ParticipantSelected" and int(args["role"]) == VOTER:
            r["voters"].append(index_of[args["client"]])
        elif name == "ParticipantRemoved":
            r["removed"].append(index_of[args["client"]])
        elif name == "VoteRevealed":
            r["ballots"].append([index_of[args["voter"]], int(args["acceptMask"])])
        elif name == "ProposalSettled":
            r["proposals"][int(args["index"])] = [index_of[args["proposer"]], int(bool(args["accepted"])), int(args["accepts"])]
        elif name == "ParticipantSettled":
            r["settled"].append([index_of[args["client"]], int(args["role"]), int(args["slashed"]), int(args["rewarded"])])
        elif name == "RoundSettled":
            r["revealed"] = int(args["revealedVotes"])
    out = []
    for number in sorted(rounds):
        r = rounds[number]
        if r["revealed"] is None:
            if r["settled"] or r["proposals"]:
                raise ValueError(f"round {number}: settlement events without RoundSettled")
            continue  # opened, never settled (a stopped run)
        if sorted(r["proposals"]) != list(range(len(r["proposals"]))):
            raise ValueError(f"round {number}: proposal indices {sorted(r['proposals'])} are not 0..P-1")
        proposals = [r["proposals"][i] for i in range(len(r["proposals"]))]
        if r["revealed"] != len(r["ballots"]):
            raise ValueError(f"round {number}: RoundSettled says {r['revealed']} revealed, {len(r['ballots'])} VoteRevealed")
        for i, (_, _, accepts) in enumerate(proposals):
            counted = sum((mask >> i) & 1 for _, mask in r["ballots"])
            if counted != accepts:
                raise ValueError(f"round {number}: proposal {i} has {accepts} accepts on chain, {counted} in the ballots")
        out.append({"round": number, "proposals": proposals, "revealed": r["revealed"], "voters": sorted(r["voters"]),
                    "ballots": sorted(r["ballots"]), "settled": sorted(r["settled"]), "removed": sorted(r["removed"])})
    return out


def condense_run(folder: Path) -> dict:
    """voter_attack.json's content for a run folder with events.jsonl (committed rounds only)."""
    from fl.simulation.recorder import committed_events, read_participants

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    participants = read_participants(folder)
    index_of = {p["address"]: p["index"] for p in participants}
    return {
        "format": FORMAT,
        "voter_stake_units": round(config["protocol"]["voter_stake"] * TOKEN),
        "stake_units": round(config["simulation"]["stake"] * TOKEN),
        "rounds": condense_events(committed_events(folder), index_of),
    }


# ----------------------------------------------------------------------------------------
# Pure analysis of condensed rounds


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def expected_voter_slash(voter_stake: int, disagreements: int, proposals: int, revealed: bool) -> int:
    """SPEC's per-proposal voter slash ceil(S * m / P); P = 0: a revealed voter wins the virtual
    proposal nobody accepts (slash 0), a silent one loses S."""
    if proposals == 0:
        return 0 if revealed else voter_stake
    return ceil_div(voter_stake * disagreements, proposals)


def accepted_mask(round_: Mapping) -> int:
    return sum(1 << i for i, (_, accepted, _) in enumerate(round_["proposals"]) if accepted)


def disagreements(mask: int, round_: Mapping) -> int:
    """m: the proposals on which a ballot ``mask`` differs from the decision."""
    full = (1 << len(round_["proposals"])) - 1
    return bin((mask ^ accepted_mask(round_)) & full).count("1")


def _majority(accepts: int, revealed: int) -> bool:
    return 2 * accepts > revealed  # RoundMath.isMajority: a tie rejects


@dataclass(frozen=True)
class BlocRound:
    """One round of a colluding-bloc run, seen from the bloc."""

    round: int
    revealed: int
    bloc_revealed: int
    poisoned: int  # proposals of bloc members
    poisoned_accepted: int
    poisoned_accepted_against_honest: int  # ... that the honest revealed voters' own majority rejected
    honest_proposals: int
    honest_rejected: int
    flipped: int  # proposals whose decision differs from the honest revealed voters' own majority
    honest_voters_slashed: int  # honest revealed voters with a voter slash > 0
    honest_voters_slashed_on_flipped: int  # ... of them on the losing side of a flipped proposal
    honest_voter_slash_units: int
    honest_accept_share_on_poison: float  # largest share of honest revealed voters accepting a poisoned proposal

    @property
    def bloc_share(self) -> float:
        return self.bloc_revealed / self.revealed if self.revealed else math.nan

    @property
    def bloc_holds_half(self) -> bool:
        """The bloc is at least half of the revealed voters (enough to block by a tie)."""
        return self.revealed > 0 and 2 * self.bloc_revealed >= self.revealed

    @property
    def bloc_majority(self) -> bool:
        """The bloc alone is a strict majority of the revealed voters (enough to accept)."""
        return self.revealed > 0 and 2 * self.bloc_revealed > self.revealed


def bloc_round(round_: Mapping, bloc: frozenset[int]) -> BlocRound:
    """The bloc's share of the revealed voters and what the round decided (``bloc``: client indices)."""
    ballots = dict(round_["ballots"])
    revealed = len(ballots)
    honest_ballots = {v: m for v, m in ballots.items() if v not in bloc}
    flipped_indices, poison_shares = [], [0.0]
    for i, (proposer, accepted, _) in enumerate(round_["proposals"]):
        honest_accepts = sum((m >> i) & 1 for m in honest_ballots.values())
        if bool(accepted) != _majority(honest_accepts, len(honest_ballots)):
            flipped_indices.append(i)
        if proposer in bloc and honest_ballots:
            poison_shares.append(honest_accepts / len(honest_ballots))
    slashed = {c: s for c, role, s, _ in round_["settled"] if role == VOTER}
    honest_slashed = [v for v in honest_ballots if slashed.get(v, 0) > 0]
    on_flipped = [v for v in honest_slashed
                  if any(((honest_ballots[v] >> i) & 1) != round_["proposals"][i][1] for i in flipped_indices)]
    poisoned = [p for p in round_["proposals"] if p[0] in bloc]
    honest = [p for p in round_["proposals"] if p[0] not in bloc]
    return BlocRound(
        round=round_["round"], revealed=revealed, bloc_revealed=sum(v in bloc for v in ballots),
        poisoned=len(poisoned), poisoned_accepted=sum(p[1] for p in poisoned),
        poisoned_accepted_against_honest=sum(round_["proposals"][i][1] and round_["proposals"][i][0] in bloc
                                             for i in flipped_indices),
        honest_proposals=len(honest), honest_rejected=sum(1 - p[1] for p in honest),
        flipped=len(flipped_indices), honest_voters_slashed=len(honest_slashed),
        honest_voters_slashed_on_flipped=len(on_flipped),
        honest_voter_slash_units=sum(slashed.get(v, 0) for v in honest_ballots),
        honest_accept_share_on_poison=max(poison_shares),
    )


def removals(rounds: Sequence[Mapping], clients: Iterable[int]) -> dict[int, int]:
    """{client: round it was removed in} for those of ``clients`` removed."""
    wanted = set(clients)
    return {c: r["round"] for r in rounds for c in r["removed"] if c in wanted}


def stakes_over_time(rounds: Sequence[Mapping], clients: Iterable[int], initial: int) -> dict[int, list[int]]:
    """Each client's stake (token units) after every round: initial + rewards - slashes, all roles."""
    stake = {c: initial for c in clients}
    series: dict[int, list[int]] = {c: [] for c in stake}
    for r in rounds:
        for client, _, slashed, rewarded in r["settled"]:
            if client in stake:
                stake[client] += rewarded - slashed
        for c in stake:
            series[c].append(stake[c])
    return series


@dataclass(frozen=True)
class LazyCheck:
    """One lazy voter drawn in one round: its disagreements m with the decision and its slash."""

    round: int
    voter: int
    proposals: int  # P
    revealed: bool
    disagreed: int  # m
    slashed: int
    expected: int  # ceil(S * m / P)
    rewarded: int

    @property
    def slash_matches(self) -> bool:
        return self.slashed == self.expected

    @property
    def loses_iff_disagrees(self) -> bool:
        return (self.slashed > 0) == (self.disagreed > 0)


def lazy_checks(rounds: Sequence[Mapping], lazy: frozenset[int], voter_stake: int) -> list[LazyCheck]:
    """Every (round, drawn lazy voter) with its m and its slash next to SPEC's ceil(S * m / P)."""
    out = []
    for r in rounds:
        ballots = dict(r["ballots"])
        settled = {c: (s, w) for c, role, s, w in r["settled"] if role == VOTER}
        count = len(r["proposals"])
        for voter in r["voters"]:
            if voter not in lazy:
                continue
            revealed = voter in ballots
            m = disagreements(ballots[voter], r) if revealed else count
            slashed, rewarded = settled.get(voter, (0, 0))
            out.append(LazyCheck(r["round"], voter, count, revealed, m, slashed,
                                 expected_voter_slash(voter_stake, m, count, revealed), rewarded))
    return out


def tail_mean(values: Sequence[float], last: int = LAST_ROUNDS) -> float:
    """Mean of the last ``last`` values, NaNs left out (NaN if none)."""
    tail = [v for v in values[-last:] if not math.isnan(v)] if values else []
    return sum(tail) / len(tail) if tail else math.nan


# ----------------------------------------------------------------------------------------
# Per-run summaries


def summarise_bloc_run(condensed: Mapping, participants: Sequence[Mapping]) -> dict:
    """The colluding-bloc numbers of one run (bloc = the malicious voters)."""
    bloc = frozenset(p["index"] for p in participants if p["malicious_voter"])
    rows = [bloc_round(r, bloc) for r in condensed["rounds"]]

    def split(attr: str) -> dict:
        return {"below_half": sum(getattr(x, attr) for x in rows if not x.bloc_holds_half),
                "half_or_more": sum(getattr(x, attr) for x in rows if x.bloc_holds_half)}

    removed = removals(condensed["rounds"], bloc)
    active = [x for x in rows if sum(removed.get(c, math.inf) > x.round for c in bloc) > 0]
    shares = [x.bloc_share for x in active if x.revealed]
    return {
        "rounds": len(rows),
        "bloc_size": len(bloc),
        "rounds_bloc_active": len(active),  # rounds with a bloc member not yet removed
        "bloc_share_mean": sum(shares) / len(shares) if shares else math.nan,  # over those rounds
        "bloc_share_max": max(shares) if shares else math.nan,
        "rounds_bloc_half_or_more": [x.round for x in rows if x.bloc_holds_half],
        "rounds_bloc_majority": [x.round for x in rows if x.bloc_majority],
        "poisoned_proposals": split("poisoned"),
        "poisoned_accepted": split("poisoned_accepted"),
        "poisoned_accepted_against_honest": split("poisoned_accepted_against_honest"),
        "honest_proposals": split("honest_proposals"),
        "honest_rejected": split("honest_rejected"),
        "flipped_proposals": split("flipped"),
        "honest_voters_slashed": split("honest_voters_slashed"),
        "honest_voters_slashed_on_flipped": split("honest_voters_slashed_on_flipped"),
        "honest_voter_slash_tokens": {k: v / TOKEN for k, v in split("honest_voter_slash_units").items()},
        "rounds_poison_accepted": [x.round for x in rows if x.poisoned_accepted],
        "honest_accept_share_on_poison_max": max((x.honest_accept_share_on_poison for x in rows), default=0.0),
        "bloc_removed": len(removed),
        "bloc_removal_rounds": sorted(removed.values()),
        "per_round": [{**asdict(x), "bloc_share": x.bloc_share} for x in rows if x.bloc_holds_half or x.poisoned_accepted],
    }


def summarise_lazy_run(condensed: Mapping, participants: Sequence[Mapping]) -> dict:
    """The lazy-voter numbers of one run (lazy = the malicious voters)."""
    lazy = frozenset(p["index"] for p in participants if p["malicious_voter"])
    checks = lazy_checks(condensed["rounds"], lazy, condensed["voter_stake_units"])
    series = stakes_over_time(condensed["rounds"], lazy, condensed["stake_units"])
    removed = removals(condensed["rounds"], lazy)
    disagreeing = [c for c in checks if c.disagreed > 0]
    final = [s[-1] for s in series.values() if s]
    return {
        "rounds": len(condensed["rounds"]),
        "lazy_voters": len(lazy),
        "lazy_voter_rounds": len(checks),
        "unrevealed": sum(not c.revealed for c in checks),
        "disagreed": len(disagreeing),
        "rounds_with_disagreement": len({c.round for c in disagreeing}),
        "slash_matches_formula": sum(c.slash_matches for c in checks),
        "slash_mismatches": [asdict(c) for c in checks if not c.slash_matches],
        "loses_iff_disagrees": sum(c.loses_iff_disagrees for c in checks),
        "voter_slash_tokens": sum(c.slashed for c in checks) / TOKEN,
        "voter_reward_tokens": sum(c.rewarded for c in checks) / TOKEN,
        "disagreed_net_tokens": sum(c.rewarded - c.slashed for c in disagreeing) / TOKEN,
        "disagreed_net_negative": sum(c.rewarded < c.slashed for c in disagreeing),  # lost stake that round
        "agreed_net_tokens": sum(c.rewarded - c.slashed for c in checks if c.disagreed == 0) / TOKEN,
        "lazy_removed": len(removed),
        "lazy_removal_rounds": sorted(removed.values()),
        "mean_stake_final": sum(final) / len(final) / TOKEN if final else math.nan,
        "mean_stake_by_round": [sum(s[i] for s in series.values()) / len(series) / TOKEN
                                for i in range(len(condensed["rounds"]))] if series else [],
    }


# ----------------------------------------------------------------------------------------
# Reading run folders


def _read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _auroc(rows: Sequence[Mapping]) -> list[float]:
    return [math.nan if r["test_auroc"] in ("", "nan", "None") else float(r["test_auroc"]) for r in rows]


def run_folders(root: Path) -> list[Path]:
    """Run folders (config.json + summary.json) below ``root``, sorted."""
    return sorted(p.parent for p in Path(root).rglob("summary.json") if (p.parent / "config.json").is_file())


def summarise_folder(folder: Path, results_dir: Path) -> dict:
    """One run folder's summary: its settings, the bloc or lazy numbers, AUROC vs FedAvg w/o mal."""
    from fl.simulation.recorder import read_participants

    recorded = json.loads((folder / "config.json").read_text())
    config = recorded["simulation"]
    condensed_path = folder / CONDENSED_FILE
    if not condensed_path.is_file():
        raise FileNotFoundError(f"{folder} has no {CONDENSED_FILE}: run `python -m fl.experiments.voter_attacks` "
                                "where its events.jsonl is")
    condensed = json.loads(condensed_path.read_text())
    participants = read_participants(folder)
    attack = config["voter_attack"]
    if attack == "colluding_bloc":
        numbers = summarise_bloc_run(condensed, participants)
    elif attack == "lazy":
        numbers = summarise_lazy_run(condensed, participants)
    else:
        raise ValueError(f"{folder}: voter attack {attack!r} is not analysed here (colluding_bloc, lazy)")
    baseline = Path(results_dir) / BASELINE / f"seed-{config['seed']}" / "metrics.csv"
    return {
        "folder": folder.relative_to(results_dir).as_posix() if folder.is_relative_to(results_dir) else str(folder),
        "voter_attack": attack, "review": config["review"], "ratio": config["malicious_ratio"],
        "seed": config["seed"], "clients": config["clients"], "rounds_requested": config["rounds"],
        "task": config.get("task", "lending"), "network": recorded.get("network"),
        "malicious_roles": config["malicious_roles"], "attack": config["attack"],
        "auroc_last50": tail_mean(_auroc(_read_metrics(folder / "metrics.csv"))),
        "fedavg_clean_auroc_last50": tail_mean(_auroc(_read_metrics(baseline))) if baseline.is_file() else math.nan,
        **numbers,
    }


def _voter_attacks_root(results_dir: Path) -> tuple[Path, Path]:
    """(results root, voter-attacks folder) from either of them."""
    results_dir = Path(results_dir)
    if results_dir.name == VOTER_ATTACKS_DIR:
        return results_dir.parent, results_dir
    return results_dir, results_dir / VOTER_ATTACKS_DIR


def collect(results_dir: Path) -> list[dict]:
    root, attacks = _voter_attacks_root(results_dir)
    return [summarise_folder(f, root) for f in run_folders(attacks)]


# ----------------------------------------------------------------------------------------
# Rendering


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _split(d: Mapping) -> str:
    return f"{d['below_half']} / {d['half_or_more']}"


def _rounds_list(rounds: Sequence[int], limit: int = 12) -> str:
    if not rounds:
        return "none"
    shown = ", ".join(str(r) for r in rounds[:limit])
    return shown + (f", ... ({len(rounds)} in all)" if len(rounds) > limit else "")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _command(run: Mapping) -> str:
    return (f"ape run simulate --malicious-ratio {run['ratio']} --malicious-roles {run['malicious_roles']} "
            f"--attack {run['attack']} "
            f"--voter-attack {run['voter_attack']} --review {run['review']} --seed {run['seed']} "
            f"--output results/{run['folder']}")


def render_summary(runs: Sequence[Mapping]) -> str:
    """The "Voter attacks (issue 12)" markdown section from ``collect``'s run summaries."""
    bloc = sorted((r for r in runs if r["voter_attack"] == "colluding_bloc"),
                  key=lambda r: (r["review"] != "cosine", r["review"], r["ratio"], r["seed"]))
    lazy = sorted((r for r in runs if r["voter_attack"] == "lazy"), key=lambda r: (r["review"], r["ratio"], r["seed"]))
    lines = ["## Voter attacks (issue 12)", ""]
    if not runs:
        return "\n".join(lines + ["No voter-attack run recorded yet (results/voter-attacks/).", ""])
    short = [r for r in runs if r["rounds"] < r["rounds_requested"]]
    def values(key):
        return "/".join(sorted({str(r.get(key)) for r in runs}))

    lines += [
        f"Task {values('task')}, {values('clients')} clients, {values('rounds_requested')} rounds, network "
        f"{values('network')}; malicious clients attack in roles {values('malicious_roles')}: as proposers they "
        f"submit `{values('attack')}` updates, as voters they run the voter attack. Target: *a colluding "
        "voting bloc below half the voters cannot get a poisoned proposal accepted (at 0.3 and 0.45); a lazy "
        "voter loses stake whenever it disagrees with the majority.* Computed by "
        "`fl/experiments/voter_attacks.py` from each run's ballots and settlements (`voter_attack.json`, "
        "condensed from the contracts' events).",
        "",
    ]
    if short:
        cut = ", ".join(f"{r['folder']} ({r['rounds']} of {r['rounds_requested']} rounds)" for r in short)
        lines += [f"Runs cut short (numbers over the rounds recorded): {cut}.", ""]
    if bloc:
        lines += [
            "### Colluding bloc",
            "",
            "The bloc (every malicious client) accepts exactly its members' proposals and rejects all others. "
            "\"< half / >= half\": rounds where the bloc held less than half / at least half of the revealed "
            "voters (at exactly half it can block a proposal by a tie; above half it decides alone). *Rounds bloc "
            "active*: rounds with a bloc member not yet removed; the share's mean is over those rounds. "
            "*Flipped*: proposals decided otherwise than the honest revealed voters' own majority. *Honest voters "
            "slashed on flipped*: honest voter-rounds slashed with a losing verdict on a flipped proposal.",
            "",
        ]
        header = ["review", "ratio", "seed", "rounds bloc active", "bloc share of revealed voters (mean / max)", "rounds bloc >= half (> half)",
                  "poison accepted (< half / >= half)", "of which the honest majority rejected", "poisoned proposals", "honest rejected (< half / >= half)",
                  "flipped proposals", "honest voters slashed on flipped", "max honest share accepting a poisoned proposal",
                  "bloc removed (last round)",
                  "AUROC last 50", "FedAvg w/o mal"]
        rows = []
        for r in bloc:
            total_poison = r["poisoned_proposals"]["below_half"] + r["poisoned_proposals"]["half_or_more"]
            rows.append([
                r["review"], f"{r['ratio']}", str(r["seed"]), str(r["rounds_bloc_active"]),
                f"{_f(r['bloc_share_mean'])} / {_f(r['bloc_share_max'])}",
                f"{len(r['rounds_bloc_half_or_more'])} ({len(r['rounds_bloc_majority'])})",
                _split(r["poisoned_accepted"]), _split(r["poisoned_accepted_against_honest"]), str(total_poison), _split(r["honest_rejected"]),
                _split(r["flipped_proposals"]), _split(r["honest_voters_slashed_on_flipped"]),
                _f(r["honest_accept_share_on_poison_max"], 2),
                f"{r['bloc_removed']} of {r['bloc_size']} ({r['bloc_removal_rounds'][-1] if r['bloc_removal_rounds'] else '-'})",
                _f(r["auroc_last50"]), _f(r["fedavg_clean_auroc_last50"]),
            ])
        lines += _table(header, rows) + [""]
        below = [r for r in bloc if r["review"] == "cosine"]
        accepted_below = sum(r["poisoned_accepted"]["below_half"] for r in below)
        offered_below = sum(r["poisoned_proposals"]["below_half"] for r in below)
        lines += [
            f"**Target, per-proposal review (cosine), {len(below)} runs:** poisoned proposals accepted while the "
            f"bloc held less than half of the revealed voters: {accepted_below} of {offered_below} "
            f"({'met' if below and accepted_below == 0 else 'NOT met' if below else 'not measured'}). "
            "The strict-majority rule alone does not guarantee this: a bloc of share b wins a proposal as soon as "
            "the honest voters accepting it exceed (1/2 - b) of the revealed voters, so the target holds because "
            "honest per-proposal reviews agree (the largest share of honest voters accepting any poisoned proposal "
            f"in these runs: {_f(max((r['honest_accept_share_on_poison_max'] for r in below), default=math.nan), 2)}).",
            "",
        ]
        for review in sorted({r["review"] for r in bloc} - {"cosine"}):
            others = [r for r in bloc if r["review"] == review]
            accepted = sum(r["poisoned_accepted"]["below_half"] for r in others)
            against = sum(r["poisoned_accepted_against_honest"]["below_half"] for r in others)
            offered = sum(r["poisoned_proposals"]["below_half"] for r in others)
            lines += [
                f"**Review `{review}`, {len(others)} runs:** poisoned proposals accepted while the bloc held less than "
                f"half: {accepted} of {offered}, of which {against} against the honest voters' own majority (the rest "
                "the honest voters accepted themselves: a failure of the review rule, not a bloc win).",
                "",
            ]
        for r in bloc:
            if not r["rounds_bloc_half_or_more"] and not r["rounds_poison_accepted"]:
                continue
            lines.append(
                f"- {r['review']} {r['ratio']} seed {r['seed']}: bloc >= half in rounds "
                f"{_rounds_list(r['rounds_bloc_half_or_more'])} (strict majority in "
                f"{_rounds_list(r['rounds_bloc_majority'])}); poison accepted in rounds "
                f"{_rounds_list(r['rounds_poison_accepted'])}; there {r['honest_rejected']['half_or_more']} honest "
                f"proposals rejected, {r['honest_voters_slashed_on_flipped']['half_or_more']} honest voter slashes on "
                f"flipped proposals ({_f(r['honest_voter_slash_tokens']['half_or_more'], 2)} tokens of honest voter "
                f"slashes in those rounds); bloc removed at rounds {_rounds_list(r['bloc_removal_rounds'])}."
            )
        lines += [
            "",
            "What the protocol could do (not built): a strict majority of the *revealed* voters is all the contract "
            "asks, so a bloc that the draw makes more than half of one round's voters decides that round. A "
            "supermajority to accept (e.g. 2/3 of the revealed voters) raises the share a bloc must hold, at the cost "
            "of rejecting honest proposals on which honest reviews split; a quorum (e.g. accept only if more than half "
            "of the *drawn* voters accept) stops a bloc from winning by honest voters' silence; drawing more voters "
            "per round (the draw takes every non-proposer up to `maxVoters`) narrows the spread of the bloc's share "
            "around its ratio.",
            "",
        ]
    if lazy:
        lines += [
            "### Lazy voters",
            "",
            "A lazy voter accepts every proposal without scoring. Per (round, lazy voter drawn): m = proposals on "
            "which its ballot differs from the decision, P = proposals, S = voter stake; SPEC's slash is "
            "ceil(S * m / P).",
            "",
        ]
        header = ["review", "ratio", "seed", "lazy voter-rounds", "disagreed (m > 0)", "rounds with a disagreement",
                  "slash == ceil(S*m/P)", "slash > 0 iff m > 0", "net loss when m > 0", "voter slashes / rewards (tokens)",
                  "net when disagreeing / agreeing", "lazy removed (last round)",
                  "mean lazy stake after rounds 10 / 25 / 50 / 100",
                  "AUROC last 50", "FedAvg w/o mal"]
        rows = [[
            r["review"], f"{r['ratio']}", str(r["seed"]), str(r["lazy_voter_rounds"]), str(r["disagreed"]),
            str(r["rounds_with_disagreement"]), f"{r['slash_matches_formula']} of {r['lazy_voter_rounds']}",
            f"{r['loses_iff_disagrees']} of {r['lazy_voter_rounds']}", f"{r['disagreed_net_negative']} of {r['disagreed']}",
            f"{_f(r['voter_slash_tokens'], 2)} / {_f(r['voter_reward_tokens'], 2)}",
            f"{_f(r['disagreed_net_tokens'], 2)} / {_f(r['agreed_net_tokens'], 2)}",
            f"{r['lazy_removed']} of {r['lazy_voters']} ({r['lazy_removal_rounds'][-1] if r['lazy_removal_rounds'] else '-'})",
            " / ".join(_f(r["mean_stake_by_round"][n - 1], 1) if len(r["mean_stake_by_round"]) >= n else "n/a"
                       for n in (10, 25, 50, 100)),
            _f(r["auroc_last50"]), _f(r["fedavg_clean_auroc_last50"]),
        ] for r in lazy]
        lines += _table(header, rows) + [""]
        checks = sum(r["lazy_voter_rounds"] for r in lazy)
        iff = sum(r["loses_iff_disagrees"] for r in lazy)
        formula = sum(r["slash_matches_formula"] for r in lazy)
        disagreed = sum(r["disagreed"] for r in lazy)
        net_loss = sum(r["disagreed_net_negative"] for r in lazy)
        lines += [
            f"**Target:** a lazy voter lost stake in exactly the voter-rounds it disagreed with the decision in "
            f"{iff} of {checks} (round, lazy voter) pairs, and its slash equalled ceil(S * m / P) in {formula} of "
            f"{checks} ({'met' if checks and iff == checks and formula == checks else 'NOT met' if checks else 'not measured'}); "
            f"counting the rewards of the same round it still lost stake in {net_loss} of the {disagreed} voter-rounds "
            "it disagreed in. Its voter stake is taken per proposal it gets wrong; on the proposals it gets right it shares the "
            "losers' slashes, so a round's net can still be positive when most proposals are accepted.",
            "",
        ]
    lines += ["Commands (one run at a time, `nice -n 10`, `APE_FOUNDRY_HOST=auto`):", "", "```"]
    lines += [_command(r) for r in [*bloc, *lazy]]
    lines += ["python -m fl.experiments.voter_attacks --results results   # condense events, write summary.{json,md}", "```", ""]
    return "\n".join(lines)


def render_voter_attacks_section(results_dir) -> str:
    """The report's "Voter attacks (issue 12)" section (markdown) from the committed files below
    ``results_dir`` (the results root, or its voter-attacks folder)."""
    return render_summary(collect(Path(results_dir)))


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fl.experiments.voter_attacks",
        description="Condense the voter-attack runs below RESULTS/voter-attacks (events.jsonl -> voter_attack.json, "
                    "where the events are still on disk) and write summary.json and summary.md there.")
    parser.add_argument("--results", default="results", help="the results root (default: results)")
    args = parser.parse_args(argv)
    root, attacks = _voter_attacks_root(Path(args.results))
    if not attacks.is_dir():
        parser.error(f"{attacks} does not exist: run the voter-attack simulations first")
    for folder in run_folders(attacks):
        if (folder / "events.jsonl").is_file():
            condensed = condense_run(folder)
            (folder / CONDENSED_FILE).write_text(json.dumps(condensed, separators=(",", ":")) + "\n")
    runs = collect(root)
    (attacks / "summary.json").write_text(json.dumps(_clean(runs), indent=1, sort_keys=True) + "\n")
    (attacks / "summary.md").write_text(render_summary(runs))
    print(f"{len(runs)} runs -> {attacks / 'summary.md'}")


if __name__ == "__main__":
    main()
