"""No coordinator: `ape run deploy` once, then one `ape run client` process per participant on anvil.

One scenario (module fixture, about 5 minutes on a busy 2-core machine): an anvil node on a free port, the protocol
deployed with short periods, 8 client processes (2 malicious) sharing a store folder, each
with its own account, data shard and state folder, running until round 3 is settled. Voters cast
ballots, one verdict per proposal (`--review loss_vs_global`: the paper's uniform rule would reject
the honest proposals of a round along with a hostile one; tests/participant covers both rules).
- Before the clients start, the test stakes for the first clients in an order that puts the two
  malicious ones where round 1's draw (its seed is fixed by the deployment) picks its proposers;
  the test opens round 1 once every client is up. Both make the shared store hostile at the hash
  they propose (`--test-hostile-blob`: a directory, and a 24 MB blob).
- Round 1: every honest voter rejects both proposals, without a crash, and both proposers are
  slashed. Once every vote is revealed the node goes away (anvil stopped, its state dumped)
  and comes back 3 s later; the clients retry with backoff and settle the round.
- Round 2: one voter gets SIGINT (Ctrl-C) while proposals are still open: it finishes its step and
  exits 0 without acting, and is slashed.
  Meanwhile a second `ape run deploy` (refused) and a client pointed at a contract that is
  not ours (refused before staking) run beside the fleet.
- Round 3: another voter is killed right after its commit is on chain and restarted at once
  with the same state folder; it must reveal the saved ballot and send nothing twice. The
  killed client of round 2 comes back with `--leave` and withdraws its whole stake.
The tests then read the chain (web3, not Ape: the test session's own provider is the
embedded chain) and the clients' state folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from web3 import Web3

from e2e_processes import APE, BIN, ROOT, Processes, contract, free_port, wait_for_rpc, wait_until

from fl.protocol.votes import Decision, Role

MNEMONIC = "test test test test test test test test test test test junk"
CLIENTS = 8
MALICIOUS = {3: "directory", 6: "oversized"}  # client number (account TEST::<n>) -> the hostile blob it plants
ROUNDS = 3
# seconds: time for a stuck tx (6 s) and, commit + reveal, for a client restarted right after its commit to
# start again and reveal (46 s measured on a loaded 2-core machine, so 24 s of reveal was too short)
PERIODS = {"proposal": 6, "commit": 12, "reveal": 48}
PROPOSER_STAKE, VOTER_STAKE, INITIAL_STAKE = 8, 4, 64
UNITS = 10**18
# Waits are generous and per phase: on a cold machine (first torch import, empty page cache)
# 8 clients starting at once on 2 cores took minutes, which is start-up, not the protocol.
STARTUP_TIMEOUT = 900  # until all 8 clients have staked
PHASE_TIMEOUT = 300  # for each later step of the scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    if not (BIN / "anvil").exists():
        pytest.fail(f"anvil not found in {BIN}: run `make setup` (it installs anvil 1.7.1 from npm there)")
    folder = tmp_path_factory.mktemp("decentralised")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    procs = Processes(folder)
    env = {**os.environ, "APE_FOUNDRY_HOST": uri, "STAKEFL_DEPLOYMENTS": str(folder / "deployments.json"),
           "NO_COLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    started = time.time()
    try:
        # Plain automine, as users run it. With many senders racing it can leave a transaction
        # unmined (foundry-rs/foundry#10122; 1 start in 5 here): the clients mine it themselves
        # after ape-config's 6 s acceptance timeout (fl.chain.errors.await_unmined).
        anvil_argv = [str(BIN / "anvil"), "--port", str(port), "--hardfork", "cancun", "--mnemonic", MNEMONIC,
                      "--accounts", "20", "--silent", "--state", str(folder / "anvil-state.json")]
        procs.start("anvil", anvil_argv, env)
        wait_for_rpc(uri)
        deploy = subprocess.run(
            [APE, "run", "deploy", "--network", "ethereum:local:foundry", "--account", "TEST::0",
             "--proposal-period", str(PERIODS["proposal"]), "--commit-period", str(PERIODS["commit"]),
             "--reveal-period", str(PERIODS["reveal"]), "--proposer-fraction", "0.25",
             "--proposer-stake", str(PROPOSER_STAKE), "--voter-stake", str(VOTER_STAKE)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
        )
        assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
        record = json.loads((folder / "deployments.json").read_text())["ethereum:local"]
        w3 = Web3(Web3.HTTPProvider(uri))
        voting = contract(w3, "VotingRound", record["voting"])
        registry = contract(w3, "StakeRegistry", record["registry"])
        token = contract(w3, "TestToken", record["token"])

        def chain_state() -> str:
            round_id = voting.functions.currentRoundId().call()
            info = voting.functions.getRound(round_id).call() if round_id else None
            return (f"{registry.functions.activeCount().call()} active clients, round {round_id}, "
                    f"block time {w3.eth.get_block('latest')['timestamp']}, now {int(time.time())}, round record {info}")

        accounts = {n: Web3.to_checksum_address(a) for n, a in enumerate(_test_addresses(w3))}

        def client_argv(n: int) -> list[str]:
            argv = [APE, "run", "client", "--network", "ethereum:local:foundry", "--account", f"TEST::{n}",
                    "--data", f"lending:{n - 1}/{CLIENTS}", "--store", str(folder / "store"),
                    "--state", str(folder / f"state-{n}"), "--wait-for", str(CLIENTS + 1),  # the test opens round 1
                    "--until-round", str(ROUNDS), "--turn-seconds", "1.5", "--poll", "1", "--review", "loss_vs_global"]
            return argv + (["--malicious", "--test-hostile-blob", MALICIOUS[n]] if n in MALICIOUS else [])

        # Stake for the clients up to the last proposer position of round 1, in an order that puts
        # the malicious clients there (the registry's active list is in deposit order); the others stake themselves.
        positions = round_one_proposer_positions(bytes(voting.functions.nextSeed().call()), CLIENTS)
        order = [n for n in range(1, CLIENTS + 1) if n not in MALICIOUS]
        for position, n in zip(sorted(positions), sorted(MALICIOUS)):
            order.insert(position, n)
        for n in order[:max(positions) + 1]:
            stake_for(w3, token, registry, accounts[n], INITIAL_STAKE * UNITS)
        for n in range(1, CLIENTS + 1):
            procs.start(f"client-{n}", client_argv(n), env)
        number_of = {accounts[n]: n for n in range(1, CLIENTS + 1)}
        wait_until(lambda: registry.functions.activeCount().call() >= CLIENTS
                   and all("staked" in procs.log_text(f"client-{n}") for n in range(1, CLIENTS + 1)),
                   STARTUP_TIMEOUT, f"all {CLIENTS} clients to start and stake", procs, poll=0.5, state=chain_state)
        voting.functions.openRound().transact({"from": accounts[0]})
        assert {number_of[a] for a in voting.functions.proposersOf(1).call()} == set(MALICIOUS), \
            "round 1 did not draw the malicious clients as proposers: has the draw or the deposit order changed?"

        # Round 1: when every committed vote is revealed (or 4 s into the reveal period at the
        # latest), stop the node and bring it back.
        def all_revealed():
            if voting.functions.currentRoundId().call() < 1:
                return False
            info = voting.functions.getRound(1).call()
            return (info[12] > 0 and info[13] == info[12]) or time.time() >= info[7] + 4

        wait_until(all_revealed, PHASE_TIMEOUT, "round 1 votes to be revealed", procs, poll=0.2, state=chain_state)
        procs.kill("anvil", signal.SIGTERM)  # anvil dumps its state on exit
        time.sleep(3)
        procs.start("anvil", anvil_argv, env)
        wait_for_rpc(uri)

        # Round 2: Ctrl-C to a voter while proposals are open (it cannot have acted yet).
        wait_until(lambda: voting.functions.currentRoundId().call() >= 2, PHASE_TIMEOUT, "round 2 to open", procs,
                   poll=0.1, state=chain_state)
        voters_2 = voting.functions.votersOf(2).call()
        victim = number_of[voters_2[0]]
        killed_at = int(time.time())
        procs.kill(f"client-{victim}", signal.SIGINT, timeout=PHASE_TIMEOUT)
        proposal_deadline_2 = voting.functions.getRound(2).call()[6]
        # bad input beside the running fleet: a second deployment, a contract that is not ours
        procs.start("deploy-again", [APE, "run", "deploy", "--network", "ethereum:local:foundry",
                                     "--account", "TEST::0"], env)
        procs.start("not-ours", client_argv(9) + ["--voting-round", record["token"]], env)

        # Round 3: restart a live voter right after its commit is on chain.
        wait_until(lambda: voting.functions.currentRoundId().call() >= 3, PHASE_TIMEOUT, "round 3 to open", procs,
                   state=chain_state)
        procs.start("leave", client_argv(victim) + ["--leave"], env)
        voters_3 = [number_of[a] for a in voting.functions.votersOf(3).call()]
        restarted = next(n for n in voters_3 if n != victim)
        wait_until(lambda: voting.functions.getParticipant(3, accounts[restarted]).call()[1], PHASE_TIMEOUT,
                   f"client {restarted} to commit in round 3", procs, poll=0.1, state=chain_state)
        procs.kill(f"client-{restarted}")
        restarted_state = voting.functions.getParticipant(3, accounts[restarted]).call()
        procs.start(f"client-{restarted}", client_argv(restarted), env)

        # Everyone still running stops by itself once round 3 is settled.
        for name in [f"client-{n}" for n in range(1, CLIENTS + 1) if n != victim] + ["deploy-again", "not-ours", "leave"]:
            proc = procs.procs[name]
            wait_until(lambda: proc.poll() is not None, PHASE_TIMEOUT, f"{name} to finish", procs, poll=0.5,
                       state=chain_state)
        side_results = {name: (procs.log_text(name), procs.procs[name].returncode) for name in ("deploy-again", "not-ours", "leave")}
        victim_first_life = (procs.logs[f"client-{victim}"][0].read_text(),
                             os.stat(folder / f"state-{victim}" / "state.json").st_mode & 0o777)
        yield {
            "folder": folder, "uri": uri, "w3": w3, "record": record, "procs": procs, "accounts": accounts,
            "victim": victim, "killed_at": killed_at, "proposal_deadline_2": proposal_deadline_2,
            "restarted": restarted, "restarted_state": restarted_state, "side": side_results,
            "victim_first_life": victim_first_life, "victim_code": procs.procs[f"client-{victim}"].returncode,
            "seconds": time.time() - started,
        }
    finally:
        procs.stop_all()


def _test_addresses(w3: Web3) -> list[str]:
    return w3.eth.accounts[:CLIENTS + 1]


def round_one_proposer_positions(seed: bytes, n: int) -> list[int]:
    """Positions in the active list that round 1's draw (RoundMath.drawIndex, a partial Fisher-Yates)
    picks as proposers, for `n` active clients and the deployment's --proposer-fraction 0.25."""
    from eth_abi import encode
    from eth_utils import keccak

    k = max(1, n * 2_500 // 10_000)
    positions = list(range(n))
    for i in range(k):
        j = i + int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % (n - i)
        positions[i], positions[j] = positions[j], positions[i]
    return positions[:k]


def stake_for(w3: Web3, token, registry, address: str, amount: int) -> None:
    """What `ape run client` does to join, sent by the test (anvil's accounts are unlocked)."""
    for call in (token.functions.mint(address, amount), token.functions.approve(registry.address, amount),
                 registry.functions.deposit(amount)):
        receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": address}), timeout=60)
        assert receipt["status"] == 1, receipt


def _settled_events(s, round_id: int) -> dict[str, tuple]:
    voting = contract(s["w3"], "VotingRound", s["record"]["voting"])
    logs = voting.events.ParticipantSettled().get_logs(from_block=0, argument_filters={"roundId": round_id})
    return {log["args"]["client"]: (Role(log["args"]["role"]), log["args"]["won"], log["args"]["slashed"],
                                    log["args"]["rewarded"]) for log in logs}


def test_decentralised__all_clients_finish_cleanly(scenario):
    expected_codes = {n: 0 for n in range(1, CLIENTS + 1) if n != scenario["victim"]}

    actual_codes = {n: scenario["procs"].procs[f"client-{n}"].returncode for n in expected_codes}

    assert actual_codes == expected_codes, {n: scenario["procs"].log_text(f"client-{n}")[-1500:] for n in expected_codes}
    print(f"scenario took {scenario['seconds']:.0f} s")


def test_decentralised__killed_voter__round_settles_and_voter_slashed(scenario):
    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    victim = scenario["accounts"][scenario["victim"]]

    round_2 = voting.functions.getRound(2).call()
    participant = voting.functions.getParticipant(2, victim).call()
    outcome = _settled_events(scenario, 2)[victim]

    first_life, state_mode = scenario["victim_first_life"]

    assert scenario["killed_at"] < scenario["proposal_deadline_2"]  # interrupted before it could act
    assert round_2[-1] is True  # settled after its deadline, without the victim
    assert participant[1] is False and participant[2] is False  # never committed nor revealed
    assert outcome == (Role.VOTER, False, VOTER_STAKE * UNITS, 0)
    # Ctrl-C (Ape's own handler would sys.exit(130) mid-step) finished the step and exited cleanly
    assert scenario["victim_code"] == 0, first_life[-2000:]
    assert "SIGINT received: finishing the current step" in first_life
    assert "stopped on request (SIGINT)" in first_life
    assert "Traceback" not in first_life
    assert state_mode == 0o600  # state.json holds ballot salts


def test_decentralised__others_go_on_and_tokens_conserved(scenario):
    w3, record = scenario["w3"], scenario["record"]
    voting = contract(w3, "VotingRound", record["voting"])
    registry = contract(w3, "StakeRegistry", record["registry"])
    token = contract(w3, "TestToken", record["token"])
    accounts = scenario["accounts"]
    clients = [accounts[n] for n in range(1, CLIENTS + 1)]
    victim = accounts[scenario["victim"]]

    # every live client drawn in round 3 acted in full
    proposers_3 = voting.functions.proposersOf(3).call()
    voters_3 = voting.functions.votersOf(3).call()
    for address in proposers_3:
        if address != victim:
            assert voting.functions.getParticipant(3, address).call()[1] is True, address
    for address in voters_3:
        if address != victim:
            assert voting.functions.getParticipant(3, address).call()[2] is True, address
    assert voting.functions.currentRoundId().call() == ROUNDS
    assert voting.functions.getRound(ROUNDS).call()[-1] is True

    # conservation: every token minted is in a wallet, the registry or the pool
    holders = [accounts[0], *clients]
    wallets = sum(token.functions.balanceOf(a).call() for a in holders)
    registry_balance = token.functions.balanceOf(record["registry"]).call()
    pool_balance = token.functions.balanceOf(record["pool"]).call()
    stakes = sum(registry.functions.stakeOf(a).call() for a in clients)
    assert token.functions.totalSupply().call() == CLIENTS * INITIAL_STAKE * UNITS
    assert wallets + registry_balance + pool_balance == CLIENTS * INITIAL_STAKE * UNITS
    assert registry_balance == stakes == registry.functions.totalStaked().call()

    # each client's stake plus wallet is its initial stake plus its settled rewards minus its slashes
    for address in clients:
        change = sum(e[3] - e[2] for r in range(1, ROUNDS + 1) for a, e in _settled_events(scenario, r).items()
                     if a == address)
        held = registry.functions.stakeOf(address).call() + token.functions.balanceOf(address).call()
        assert held == INITIAL_STAKE * UNITS + change, address


def test_decentralised__restarted_voter__reveals_without_acting_twice(scenario):
    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    n = scenario["restarted"]
    address = scenario["accounts"][n]
    journal = [json.loads(line) for line in (scenario["folder"] / f"state-{n}" / "journal.jsonl").read_text().splitlines()]

    attempts = [(e["action"], e["round"]) for e in journal if e["status"] == "sending"]
    sent = [(e["action"], e["round"]) for e in journal if e["status"] == "sent"]
    participant = voting.functions.getParticipant(3, address).call()
    second_life = scenario["procs"].logs[f"client-{n}"][-1].read_text()

    assert scenario["restarted_state"][1] is True and scenario["restarted_state"][2] is False  # committed, not revealed
    assert participant[2] is True  # revealed after the restart
    # killed while its commit was in flight: one attempt, whose confirmation it did not live to log
    assert attempts.count(("commit", 3)) == 1 and attempts.count(("reveal", 3)) == 1
    assert ("reveal", 3) in sent
    assert len(attempts) == len(set(attempts))  # nothing was attempted twice, in any round
    assert attempts.count(("deposit", 0)) <= 1  # the test may have staked for it (see the scenario)
    assert "already staked" in second_life and "commit sent" not in second_life and "reveal sent" in second_life


def test_client_leave__withdraws_the_whole_stake(scenario):
    w3, record = scenario["w3"], scenario["record"]
    registry = contract(w3, "StakeRegistry", record["registry"])
    token = contract(w3, "TestToken", record["token"])
    address = scenario["accounts"][scenario["victim"]]
    output, code = scenario["side"]["leave"]

    assert code == 0, output[-2000:]
    assert "left: withdrew" in output
    assert registry.functions.stakeOf(address).call() == 0
    assert token.functions.balanceOf(address).call() > 0


def _derived_model(store, voting, round_id: int, reference):
    """The model round `round_id` produced, rebuilt from the chain and the store as a client does:
    the FedAvg of its accepted proposals over the parent its voters confirmed (the parent if none)."""
    from fl.defences.aggregate import fedavg
    from fl.learning.store import hash_state

    info = voting.functions.getRound(round_id).call()
    parent = bytes(info[1])  # confirmed by this round's voters (asserted by the caller)
    proposers, hashes, counts = voting.functions.proposalsOf(round_id).call()
    accepted = [(store.load_update(bytes(h), reference), int(c))
                for i, (h, c) in enumerate(zip(hashes, counts)) if info[4] >> i & 1]
    return hash_state(fedavg(accepted)) if accepted else parent


def test_decentralised__clients_hold_the_fedavg_of_accepted_and_voters_confirm_it(scenario):
    from fl.learning.model import init_model, state_of
    from fl.learning.store import UpdateStore

    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    store = UpdateStore(str(scenario["folder"] / "store"))
    reference = state_of(init_model(scenario["record"]["model"]["num_features"], scenario["record"]["model"]["seed"]))
    rounds = {r: voting.functions.getRound(r).call() for r in range(1, ROUNDS + 1)}
    adopted = {
        n: json.loads((scenario["folder"] / f"state-{n}" / "state.json").read_text())["global_hash"]
        for n in range(1, CLIENTS + 1) if n != scenario["victim"]
    }

    # every round's parent was confirmed by a voter majority: 2 * leadingParentVotes > revealCount
    assert all(2 * info[14] > info[13] for info in rounds.values()), rounds
    assert bytes(rounds[1][1]) == bytes(voting.functions.initialModelHash().call())
    for r in range(2, ROUNDS + 1):  # the recorded hash lags one round: round r records round r-1's model
        assert bytes(rounds[r][1]) == _derived_model(store, voting, r - 1, reference), r
    final = _derived_model(store, voting, ROUNDS, reference)
    assert set(adopted.values()) == {final.hex()}
    assert store.has(final)
    assert bytes(voting.functions.globalModelHash().call()) == bytes(rounds[ROUNDS][1])
    decisions = [Decision(info[-2]) for info in rounds.values()]
    assert all(d in (Decision.ACCEPTED, Decision.REJECTED) for d in decisions)
    assert Decision.ACCEPTED in decisions  # the FedAvg above covered accepted proposals, not only "unchanged"


def test_decentralised__hostile_blobs__honest_voters_reject_and_proposers_slashed(scenario):
    w3, record = scenario["w3"], scenario["record"]
    voting = contract(w3, "VotingRound", record["voting"])
    accounts = scenario["accounts"]
    proposers, hashes, _ = voting.functions.proposalsOf(1).call()
    store = scenario["folder"] / "store"
    settled = voting.events.ProposalSettled().get_logs(from_block=0, argument_filters={"roundId": 1})
    outcomes = _settled_events(scenario, 1)
    honest_voters = [a for a in voting.functions.votersOf(1).call()
                     if {n for n, x in accounts.items() if x == a}.isdisjoint(MALICIOUS)]

    planted = {n: store / f"{bytes(h).hex()}.safetensors" for n in MALICIOUS
               for p, h in zip(proposers, hashes) if p == accounts[n]}
    assert set(planted) == set(MALICIOUS)  # both proposed in round 1
    assert planted[3].is_dir() and planted[6].stat().st_size > 20 * 2**20
    assert honest_voters
    for voter in honest_voters:  # revealed a ballot that rejects both proposals
        participant = voting.functions.getParticipant(1, voter).call()
        assert participant[2] is True and participant[6] == 0, (voter, participant)
    assert [log["args"]["accepted"] for log in settled] == [False, False]
    for n in MALICIOUS:
        assert outcomes[accounts[n]] == (Role.PROPOSER, False, PROPOSER_STAKE * UNITS, 0)
    for n in range(1, CLIENTS + 1):  # nobody crashed on them; the voters said why they rejected
        text = scenario["procs"].log_text(f"client-{n}")
        assert "Traceback" not in text, n
        if accounts[n] in honest_voters:
            assert "round 1: proposal 0 from" in text and "unusable" in text, n


def test_decentralised__node_away_and_back__clients_retry(scenario):
    voting = contract(scenario["w3"], "VotingRound", scenario["record"]["voting"])
    logs = {n: scenario["procs"].log_text(f"client-{n}") for n in range(1, CLIENTS + 1)}

    retried = [n for n, text in logs.items() if "node unreachable" in text]

    assert retried  # at least the clients polling during the outage saw it and retried
    assert voting.functions.getRound(1).call()[-1] is True


def test_deploy__again_without_force__refused(scenario):
    output, code = scenario["side"]["deploy-again"]

    assert code != 0
    assert "already records a live deployment" in output
    assert "Traceback" not in output


def test_client__address_not_ours__clear_error_before_staking(scenario):
    output, code = scenario["side"]["not-ours"]
    registry = contract(scenario["w3"], "StakeRegistry", scenario["record"]["registry"])
    address = scenario["w3"].eth.accounts[9]

    assert code != 0
    assert "is not this project's VotingRound" in output
    assert "Traceback" not in output
    assert registry.functions.stakeOf(address).call() == 0
