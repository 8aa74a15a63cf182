"""The review rule as a sweep/report dimension: protocol-aggregate and protocol-cosine side by side."""

from __future__ import annotations

from pathlib import Path

from fl.experiments.runs import Run, Sweep
from fl.experiments.sweep import plan_sweep
from fl.simulation.rounds import SimulationConfig


def test_plan_sweep__one_protocol_run_per_review_rule_with_that_rule():
    base = SimulationConfig(rounds=100, malicious_roles="proposer")

    specs = plan_sweep(base, [0.1, 0.4], [0], ["protocol-aggregate", "protocol-cosine"],
                       survival_stakes=[4, 8], voter_ratio=0.3, extra_seeds=[0], extra_rounds=50)

    assert [(s.method, s.ratio) for s in specs if s.group == "main"] == [
        ("protocol-aggregate", 0.1), ("protocol-cosine", 0.1), ("protocol-aggregate", 0.4), ("protocol-cosine", 0.4)]
    for spec in specs:
        assert spec.config.review == ("aggregate" if spec.method.startswith("protocol-aggregate") else "cosine")
    extras = {s.method: s.config for s in specs if s.group != "main"}
    # per rule: voters, and every survival stake (the default one too: the main runs have other rounds)
    assert set(extras) == {f"protocol-{r}-{k}" for r in ("aggregate", "cosine") for k in ("voters", "pstake4", "pstake8")}
    assert extras["protocol-cosine-pstake4"].proposer_stake == 4 and extras["protocol-cosine-pstake4"].rounds == 50
    assert extras["protocol-aggregate-voters"].malicious_roles == "voter"


def _run(method: str, ratio: float, group: str = "main", *, mal_rejected=0, hon_rejected=0, auroc=0.7) -> Run:
    rows = [{"round": str(i + 1), "decision": "accepted", "malicious_proposers": "1", "test_auroc": str(auroc),
             "test_accuracy": "0.9", "test_balanced_accuracy": "0.5", "active_malicious": "5", "active_honest": "45",
             "malicious_rejected": str(mal_rejected), "malicious_accepted": str(1 - mal_rejected),
             "honest_rejected": str(hon_rejected), "honest_accepted": str(4 - hon_rejected)} for i in range(4)]
    return Run(folder=Path(f"/r/{method}/ratio-{ratio:g}/seed-0"), method=method, group=group, task="lending",
               ratio=ratio, seed=0, config={"proposer_stake": 8, "stake": 20}, rows=rows,
               summary={"malicious_clients": 5, "honest_clients": 45})


def test_sweep_and_decisions__both_rules_side_by_side():
    from fl.experiments.report import decisions_section, table_markdown

    sweep = Sweep([_run("fedavg-attack", 0.2), _run("fedavg-clean", 0.0),
                   _run("protocol-aggregate", 0.2, auroc=0.6), _run("protocol-cosine", 0.2, mal_rejected=1, hon_rejected=1),
                   _run("protocol-cosine-voters", 0.3, group="voters")])

    assert sweep.protocol_methods == ["protocol-aggregate", "protocol-cosine"]
    assert [r.method for r in sweep.voter_runs("protocol-cosine")] == ["protocol-cosine-voters"]
    assert sweep.voter_runs("protocol-aggregate") == []
    table = table_markdown(sweep, "test_auroc")
    assert "| FedAvg w/ block, paper's rule (aggregate) | 0.600 ± 0.000 (n=1) |" in table
    text = "\n".join(decisions_section(sweep))
    # 4 rounds x 1 malicious proposal, all rejected by cosine; 1 of 4 honest per round rejected
    assert "| 0.2 | `protocol-cosine` | 0.0 ± 0.0 | 4.0 ± 0.0 | 100.0% (4 of 4) | 25.0% (4 of 16) |" in text
    assert "| 0.2 | `protocol-aggregate` | 0.0 ± 0.0 | 4.0 ± 0.0 | 0.0% (0 of 4) | 0.0% (0 of 16) |" in text


def test_sweep__a_review_rule_without_runs_still_has_its_row():
    from fl.experiments.report import table_markdown

    sweep = Sweep([_run("fedavg-attack", 0.2), _run("protocol-aggregate", 0.2)])

    assert sweep.protocol_methods == ["protocol-aggregate", "protocol-cosine"]
    assert "| FedAvg w/ block, per-proposal review (cosine) | n/a |" in table_markdown(sweep, "test_auroc")


def test_claim_a__compares_with_the_baselines_of_the_same_seeds():
    from fl.experiments.report import claim_a

    other_seed = _run("fedavg-clean", 0.0, auroc=0.2)
    other_seed.seed = 1
    sweep = Sweep([_run("fedavg-attack", 0.2, auroc=0.5), _run("fedavg-clean", 0.0, auroc=0.7), other_seed,
                   _run("protocol-cosine", 0.2, auroc=0.695), _run("protocol-aggregate", 0.2, auroc=0.6)])

    assert claim_a(sweep, "test_auroc", "protocol-cosine")[0] is True  # seed 1's 0.2 must not lower the bar
    assert claim_a(sweep, "test_auroc", "protocol-aggregate")[0] is False
