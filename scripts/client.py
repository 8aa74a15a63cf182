"""ape run client: one long-running participant of the stake protocol, with its own account and data."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option

from fl.defences.voter_review import DEFAULT_RULE, RULES as REVIEW_RULES


@click.command(cls=ConnectedProviderCommand, short_help="Run one participant: stake, propose, vote, settle")
@account_option()
@click.option("--data", "data_spec", required=True, metavar="SHARD|CSV",
              help="Private data: lending:<index>/<count> (a share of the embedded Lending Club sample, "
                   "optionally lending:<i>/<n>@<kaggle.csv>) or a CSV of encoded features plus a 0/1 target column.")
@click.option("--store", default="updates", show_default=True, metavar="FOLDER|URL",
              help="The update store shared by all participants: a folder, or any fsspec URL (s3://bucket/x, gcs://...; memory:// is per process).")
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False),
              help="This client's own folder (ballots, journal). Default: .client-state/<network>/<address>.")
@click.option("--deployments", default=None, type=click.Path(dir_okay=False),
              help="Addresses file written by `ape run deploy` (default: $STAKEFL_DEPLOYMENTS or ./deployments.json).")
@click.option("--voting-round", default=None, metavar="ADDRESS",
              help="Attach to this VotingRound instead of the recorded one (the other contracts are read from it).")
@click.option("--stake", default=64.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Tokens to stake when joining (never staked twice: skipped if the account has stake).")
@click.option("--malicious", is_flag=True, help="Act maliciously (see --attack).")
@click.option("--attack", default="both", show_default=True, type=click.Choice(["both", "proposer", "voter"]),
              help="With --malicious: poison proposals (wrong labels), vote against the evidence, or both.")
@click.option("--review", "review", default=DEFAULT_RULE, show_default=True, type=click.Choice(list(REVIEW_RULES)),
              help="How a voter judges each proposal on its own data (the rules of `ape run simulate --review`, "
                   "fl/defences/voter_review.py): aggregate = the paper's uniform ballot (accept all iff the FedAvg "
                   "of the proposals scores >= the parent model's score - epsilon); loss_vs_global / loss_vs_median "
                   "/ leave_one_out = per-proposal log-loss tests; cosine[_and_loss] = direction of each update vs "
                   "the voter's own; cosine_floor = cosine that also rejects an update far shorter than the voter's "
                   "own (a free rider's). A proposal whose blob is missing or invalid is always rejected.")
@click.option("--epsilon", default=0.01, show_default=True, type=click.FloatRange(min=0),
              help="--review aggregate: accept iff score(aggregate) >= score(parent model) - epsilon.")
@click.option("--score", default="accuracy", show_default=True,
              type=click.Choice(["accuracy", "balanced_accuracy", "auroc"]),
              help="Validation score of --review aggregate and of the logged model quality.")
@click.option("--local-epochs", default=1, show_default=True, type=click.IntRange(min=1), help="Local epochs per proposal.")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Adam learning rate of local training.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the data split (must match the other participants' for lending shards) and of training.")
@click.option("--poll", "poll_seconds", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between two reads of the chain.")
@click.option("--turn-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between two clients' turns to open or settle a round (avoids racing).")
@click.option("--wait-for", default=2, show_default=True, type=click.IntRange(min=2),
              help="Open the first round only once this many clients have staked.")
@click.option("--leave", is_flag=True,
              help="Withdraw this account's whole stake and exit (after the live round if its stake is locked in it).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Torch CPU threads (one keeps many clients on one machine from starving each other).")
@click.option("--until-round", default=None, type=click.IntRange(min=1),
              help="Exit once this round is settled (default: run until stopped).")
@click.option("--test-hostile-blob", "hostile_blob", default=None, type=click.Choice(["directory", "oversized"]),
              hidden=True, help="Test hook (with --malicious, a local --store folder): as a proposer, make the "
                                "store hostile at the proposed hash (a directory, or a 24 MB blob).")
def cli(account, data_spec, store, state_dir, deployments, voting_round, stake, malicious, attack, review, epsilon,
        score, local_epochs, lr, seed, poll_seconds, turn_seconds, wait_for, leave, threads, until_round,
        hostile_blob):
    """Join the deployment recorded for --network and take part in every round: stake (minting the
    local test token first), propose when drawn as a proposer, commit and reveal a ballot (one verdict
    per proposal, see --review) when drawn as a voter, open and settle rounds in turn with the other
    clients, and after each settlement adopt the FedAvg of the accepted proposals. Ctrl-C or SIGTERM
    finishes the current step and exits 0 (a second Ctrl-C stops at once). Safe to stop and restart:
    it resumes from the chain and --state.
    """
    stopping: list[str] = []
    _stop_on_signals(stopping)  # replaces Ape's SIGINT handler (sys.exit(130) wherever the client is)
    from fl.chain.connection import (
        attach_by_voting_round,
        attach_protocol,
        check_contract,
        connected_chain_id,
        ContractCheckError,
        is_local_network,
        network_name,
        provider_started_node,
        quiet_logging,
    )
    from fl.chain.errors import classify_error
    from fl.chain.participant_ledger import ParticipantLedger, unlock_for_signing
    from fl.chain import deployments as registry_file
    from fl.learning.data import DataError
    from fl.learning.model import init_model, state_of
    from fl.participant.client import Participant
    from fl.participant.data import load_participant_data
    from fl.participant.state import ClientConfig, ClientState, ParticipantError
    from fl.learning.store import UpdateStore, hash_state

    import torch

    if hostile_blob and not malicious:
        raise click.UsageError("--test-hostile-blob is a malicious proposer's test hook: add --malicious")
    torch.set_num_threads(threads)
    network = network_name()
    address = str(account.address)
    _configure_logging(address)
    log = logging.getLogger("stakefl.client")
    quiet_logging()

    if provider_started_node():
        raise click.ClickException(
            f"no node was running for {network}: the provider started a private one that no other participant "
            "shares. Start the chain first (or check --network / APE_FOUNDRY_HOST)."
        )
    path = deployments or registry_file.default_path()
    chain_id = connected_chain_id()
    try:
        record = registry_file.load(path, network)
    except registry_file.DeploymentError as exc:
        if not voting_round:
            raise click.ClickException(str(exc)) from None
        record = None  # attaching by address alone: the chain is checked below
    if record is not None and chain_id != record.chain_id:
        raise click.ClickException(
            f"wrong network: {path} records chain id {record.chain_id} for {registry_file.network_key(network)}, "
            f"but the node at {network} reports chain id {chain_id}"
        )
    try:
        if voting_round:
            protocol = attach_by_voting_round(voting_round)
        else:
            protocol = attach_protocol(record.token, record.registry, record.pool, record.voting)
    except ContractCheckError as exc:
        raise click.ClickException(str(exc)) from None

    try:
        data, num_features = load_participant_data(data_spec, seed)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    model = (record.model if record else None) or {}
    if model.get("num_features") not in (None, num_features):
        raise click.ClickException(
            f"--data gives {num_features} features, the deployed model takes {model['num_features']}: "
            "use data encoded like the other participants'"
        )
    model_seed = int(model.get("seed", 0))
    ledger = ParticipantLedger(protocol, account)
    if hash_state(state_of(init_model(num_features, model_seed))) != ledger.initial_model_hash():
        raise click.ClickException(
            "the initial model rebuilt from the deployment's seed does not match the hash on chain: "
            "the deployments file does not describe this VotingRound"
        )
    if int(account.balance) == 0:
        raise click.ClickException(f"{address} has no ether on {network} to pay for gas; fund it first")

    folder = Path(state_dir) if state_dir else Path(".client-state") / registry_file.network_key(network).replace(":", "-") / address
    try:
        state = ClientState(folder, address, str(protocol.voting.address), chain_id)
    except ParticipantError as exc:
        raise click.ClickException(str(exc)) from None
    config = ClientConfig(
        stake=stake, malicious=malicious, attack=attack, review=review, epsilon=epsilon, score=score, local_epochs=local_epochs,
        lr=lr, seed=seed, poll_seconds=poll_seconds, turn_seconds=turn_seconds, wait_for=wait_for,
        until_round=until_round, hostile_blob=hostile_blob,
        mint=is_local_network() and record is not None and record.test_token and not voting_round,
    )
    unlock_for_signing(account)
    participant = Participant(
        ledger, classify_error, UpdateStore(store), state, data, num_features, model_seed, config,
        from_block=record.block if record else 0,
    )
    participant.warm_up()
    log.info("joining %s on %s as %s%s; data %s (%d train / %d validation rows); store %s; state %s",
             protocol.voting.address, network, address, " (malicious)" if malicious else "", data_spec,
             len(data.train), len(data.val), store, folder)

    try:
        if leave:
            participant.leave(should_stop=lambda: bool(stopping))
        elif not stopping:
            _with_retry(participant.join, classify_error, log)
            participant.run(should_stop=lambda: bool(stopping))
    except (KeyboardInterrupt, SystemExit):
        # a second Ctrl-C (or an exit raised elsewhere) mid-step: every file is written atomically and
        # the chain says what was sent, so a restart resumes from here
        stopping.append("interrupt")
    except ParticipantError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception:
        # a node restarted without its state answers, but our contracts are gone: say so
        try:
            check_contract("voting", str(protocol.voting.address), exact=False)
        except ContractCheckError as gone:
            raise click.ClickException(str(gone)) from None
        raise
    if leave and not stopping:
        return
    log.info("stopped%s; stake stays in the registry, state in %s",
             f" on request ({stopping[0]})" if stopping else "", folder)


def _stop_on_signals(stopping: list[str]) -> None:
    """SIGINT and SIGTERM ask the client to stop after the current step (a poll of the chain and the
    actions it takes); a second SIGINT raises KeyboardInterrupt to stop at once."""
    log = logging.getLogger("stakefl.client")

    def request_stop(signum, _frame):
        name = signal.Signals(signum).name
        if stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not stopping:
            log.info("%s received: finishing the current step, then stopping", name)
        stopping.append(name)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)


def _with_retry(action, classify, log, attempts: int = 8):
    from fl.participant.client import Backoff

    backoff = Backoff()
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001
            if classify(exc) != "transient" or attempt == attempts - 1:
                raise
            delay = backoff.next()
            log.warning("node unreachable (%s); retrying in %.1f s", type(exc).__name__, delay)
            import time

            time.sleep(delay)


class _DropRepeatedKeyWarning(logging.Filter):
    """Ape warns "Using cached key for <alias>" on every transaction of an unlocked keyfile account."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Using cached key")


def _configure_logging(address: str) -> None:
    logging.getLogger("ape").addFilter(_DropRepeatedKeyWarning())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {address[:8]} %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("stakefl")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


for _param in cli.params:  # account_option() takes no help text
    if _param.name == "account":
        _param.help = "This participant's Ape account: an alias from `ape accounts list`, or TEST::<n> on local chains."
