"""ape run deploy: deploy the protocol to any Ape network and record its addresses for the clients."""

from __future__ import annotations

from datetime import datetime, timezone

import click
from ape.cli import ConnectedProviderCommand, account_option

from fl.protocol.params import MAX_PROPOSALS, MAX_SEED_BLOCK_DELAY, ProtocolParams

DEFAULTS = ProtocolParams()


@click.command(cls=ConnectedProviderCommand, short_help="Deploy the contracts and record their addresses")
@account_option()
@click.option("--token", default=None, metavar="ADDRESS",
              help="ERC-20 to stake. Required off local chains; on a local chain a TestToken is deployed if omitted.")
@click.option("--deployments", default=None, type=click.Path(dir_okay=False),
              help="Addresses file to write (default: $STAKEFL_DEPLOYMENTS or ./deployments.json).")
@click.option("--force", is_flag=True, help="Deploy again although this network already has a live deployment.")
@click.option("--proposer-fraction", default=DEFAULTS.proposer_fraction, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of active clients drawn as proposers each round.")
@click.option("--max-proposers", default=DEFAULTS.max_proposers, show_default=True, type=click.IntRange(1, MAX_PROPOSALS),
              help=f"Upper bound on proposers per round (bounds gas; the contract allows at most {MAX_PROPOSALS}).")
@click.option("--max-voters", default=DEFAULTS.max_voters, show_default=True, type=click.IntRange(1, 65535),
              help="Upper bound on voters per round (bounds gas).")
@click.option("--proposer-stake", default=DEFAULTS.proposer_stake, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Tokens a proposer locks per round; slashed when its proposal is rejected.")
@click.option("--voter-stake", default=DEFAULTS.voter_stake, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Tokens a voter locks per round.")
@click.option("--proposer-reward", default=DEFAULTS.proposer_reward, show_default=True,
              type=click.FloatRange(min=0), help="Reward per accepted proposal, paid to its proposer from the pool.")
@click.option("--proposal-period", default=DEFAULTS.proposal_period, show_default=True, type=click.IntRange(min=1),
              help="Seconds from opening a round to its proposal deadline.")
@click.option("--commit-period", default=DEFAULTS.commit_period, show_default=True, type=click.IntRange(min=1),
              help="Seconds from the proposal deadline to the commit deadline.")
@click.option("--reveal-period", default=DEFAULTS.reveal_period, show_default=True, type=click.IntRange(min=1),
              help="Seconds from the commit deadline to the reveal deadline.")
@click.option("--seed-block-delay", default=DEFAULTS.seed_block_delay, show_default=True,
              type=click.IntRange(0, MAX_SEED_BLOCK_DELAY),
              help="Blocks from a settlement to the block whose hash the next round's seed also mixes in "
                   "(SPEC.md, Randomness). 0 = the voters' salts alone: the same draws on every chain, but a "
                   "group revealing last can pick among seeds by withholding reveals. Use 2-5 on any public "
                   "chain; openRound then waits for that block (clients do), and after 256 blocks without an "
                   "opening anyone re-anchors it.")
@click.option("--model-seed", default=0, show_default=True, type=int,
              help="Seed of the initial model (its hash is fixed on chain; clients rebuild it from this seed).")
@click.option("--features", default=None, type=click.IntRange(min=1),
              help="Input width of the model. Default: the width of the embedded Lending Club encoding.")
@click.option("--store", default=None, metavar="FOLDER|URL",
              help="Also put the initial model in this update store (clients can rebuild it anyway).")
def cli(account, token, deployments, force, model_seed, features, store, **params):
    """Deploy StakeRegistry, ProposalPool and VotingRound (and, on local chains only, a TestToken),
    wire their roles (registry.bind, pool.bind), and record the addresses for this network in the
    deployments file that `ape run client` reads. Refuses to replace a live deployment unless --force.

    Examples: `ape run deploy --network ethereum:local:foundry --account TEST::0` (anvil running
    on localhost:8545), `ape run deploy --network ethereum:sepolia:node --account deployer --token 0x...`.
    """
    from fl.chain.connection import (
        check_contract,
        connected_chain_id,
        ContractCheckError,
        head_block_number,
        is_local_network,
        network_name,
        provider_started_node,
    )
    from fl.chain.participant_ledger import unlock_for_signing
    from fl.chain import deployments as registry_file
    from fl.learning.data import DataError, load_lending_club, make_federated_data
    from fl.learning.model import init_model, state_of
    from fl.learning.store import UpdateStore, hash_state

    path = deployments or registry_file.default_path()
    network = network_name()
    if provider_started_node():
        raise click.ClickException(
            f"{network} is a chain that lives only inside this command (the provider started it), so no client "
            "could reach it. Start a node first (e.g. `anvil --hardfork cancun`) and deploy to it, or use a "
            "public network."
        )
    chain_id = connected_chain_id()
    local = is_local_network()
    try:
        existing = registry_file.read_all(path).get(registry_file.network_key(network))
    except registry_file.DeploymentError as exc:
        raise click.ClickException(str(exc)) from None
    if existing and not force:
        live = _is_live(existing, chain_id)
        if live:
            raise click.ClickException(
                f"{path} already records a live deployment on {registry_file.network_key(network)} "
                f"(VotingRound {existing['voting']}); pass --force to deploy a new one (clients then follow the file)"
            )
        click.echo(f"the recorded deployment on {network} is gone from the chain (node restarted?); replacing it")

    if token is None and not local:
        raise click.ClickException(
            "--token is required off local chains: the test token lets anyone mint and is never deployed there"
        )
    token_contract = None
    if token is not None:
        try:
            token_contract = check_contract("token", token, exact=False)
        except ContractCheckError:
            raise click.ClickException(f"--token {token}: there is no contract at that address on {network}") from None
        try:
            token_contract.balanceOf(account.address)
            token_contract.totalSupply()
        except Exception as exc:  # noqa: BLE001 - any failure means "not an ERC-20 here"
            raise click.ClickException(f"--token {token} does not answer as an ERC-20 on {network}: {exc}") from None

    if features is None:
        try:
            features = make_federated_data(load_lending_club(), 2, 0).num_features
        except DataError as exc:
            raise click.ClickException(str(exc)) from None
    initial = state_of(init_model(features, model_seed))
    initial_hash = hash_state(initial)
    if store:
        UpdateStore(store).put_state(initial)

    protocol_params = ProtocolParams(**params)
    unlock_for_signing(account)
    first_block = head_block_number()
    protocol = _deploy_protocol(account, protocol_params, initial_hash, token_contract)
    record = registry_file.Deployment(
        chain_id=chain_id,
        network=network,
        token=str(protocol.token.address),
        registry=str(protocol.registry.address),
        pool=str(protocol.pool.address),
        voting=str(protocol.voting.address),
        test_token=token is None,
        deployer=str(account.address),
        block=first_block,
        deployed_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        params={k: getattr(protocol_params, k) for k in protocol_params.__dataclass_fields__},
        model={"task": "lending", "num_features": features, "seed": model_seed, "initial_hash": "0x" + initial_hash.hex()},
    )
    registry_file.save(path, network, record)
    for name in ("token", "registry", "pool", "voting"):
        click.echo(f"{name:9s} {getattr(record, name)}")
    click.echo(f"recorded for {registry_file.network_key(network)} (chain id {chain_id}) in {path}")


def _deploy_protocol(account, params, initial_hash: bytes, token):
    """ProtocolChain.deploy, or on a chain that mines on its own clock (a public or custom network,
    anvil --block-time) the same contracts and wiring sent one by one, each waited for in its block
    (Ape's foundry provider returns an unmined receipt there: "did not create a contract")."""
    from ape import project

    from fl.chain.ledger import ProtocolChain
    from fl.chain.sending import automines, deploy, transact

    if automines():
        return ProtocolChain.deploy(account, params, initial_hash, token=token, fast=False)
    token = token or deploy(account, project.TestToken)
    registry = deploy(account, project.StakeRegistry, token.address)
    pool = deploy(account, project.ProposalPool, token.address, registry.address)
    voting = deploy(account, project.VotingRound, registry.address, pool.address, params.as_struct(), initial_hash)
    transact(account, registry.bind, voting.address, pool.address)
    transact(account, pool.bind, voting.address)
    return ProtocolChain(token, registry, pool, voting, [], fast=False)


def _is_live(entry: dict, chain_id: int) -> bool:
    """True if the recorded VotingRound still holds code on this chain."""
    from fl.chain.connection import ContractCheckError, check_contract

    if int(entry.get("chain_id", -1)) != chain_id:
        return False
    try:
        check_contract("voting", entry["voting"], exact=False)
    except ContractCheckError:
        return False
    return True


for _param in cli.params:  # account_option() takes no help text
    if _param.name == "account":
        _param.help = "The deployer's Ape account: an alias from `ape accounts list`, or TEST::<n> on local chains."
