"""Recovery of the SMPP path: several workers, Redis losing its data, failures after a commit,
stops in the middle of a long message, and replies delivered in pieces more than once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from gateway.background import Worker
from gateway.messaging import inbound
from gateway.messaging.stream import GROUP, OutboundStream
from gateway.store import outbox
from gateway.store.models import OutboxMessage, SmsPart
from smpp import codec
from smpp.deliver_sm import DeliverSm
from smpp.feeder import Feeder
from smpp.pdu import Pdu, Status
from smpp.recorder import Inbound, Recorder
from smpp.worker import SmppWorker
from tests.smpp_helpers import running, wait_until
from tests.test_smpp_faults import queue_many, statuses

pytestmark = pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000)


def test_throttled_parts_survive_a_connection_closed_right_after(gw, smsc):
    queue_many(gw, 5)
    smsc.throttle_next = 5
    submit = smsc._submit

    def throttle_then_hang_up(session, pdu):
        throttling = smsc.throttle_next > 0
        submit(session, pdu)
        if throttling and smsc.throttle_next == 0:
            session.writer.close()  # the five throttled answers, then the connection ends

    smsc._submit = throttle_then_hang_up
    with running(gw, smsc.port, "w1"):
        wait_until(lambda: statuses(gw) == {"delivered": 5}, what="every message")


def test_a_redis_failure_after_the_commit_repeats_nothing(gw, smsc, monkeypatch):
    ack = OutboundStream.ack
    failures = []

    def failing_once(self, entry_ids):
        if threading.current_thread().name == "smpp-recorder" and entry_ids and not failures:
            failures.append(entry_ids)
            raise redis.ConnectionError("blip")
        return ack(self, entry_ids)

    monkeypatch.setattr(OutboundStream, "ack", failing_once)
    phones = queue_many(gw, 3)
    with running(gw, smsc.port, "w1"):
        wait_until(lambda: statuses(gw) == {"delivered": 3}, what="every message")
    assert failures and all(len(smsc.messages(phone)) == 1 for phone in phones)


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000, SMPP_RECLAIM_AFTER=1)
def test_a_dead_workers_row_is_sent_after_redis_lost_its_data(gw, smsc, clock):
    [phone] = queue_many(gw, 1)
    stream = OutboundStream(gw.redis, gw.settings.REDIS_PREFIX)
    stream.ensure_group()
    assert stream.read("dead-worker", 10, None)  # a worker read it, claimed it, and died
    with gw.db.transaction() as session:
        session.execute(update(OutboxMessage).values(status="sending",
                                                     lease_until=clock() + timedelta(seconds=1)))
    for key in gw.redis.scan_iter(match=f"{gw.settings.REDIS_PREFIX}*"):
        gw.redis.delete(key)  # Redis restarts without its data
    clock.advance(seconds=2)  # the dead worker's lease runs out
    with running(gw, smsc.port, "w2"):
        wait_until(lambda: statuses(gw) == {"delivered": 1}, what="the message")
    assert len(smsc.messages(phone)) == 1


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_RECLAIM_AFTER=1)
def test_a_feeder_standing_by_leaves_a_dead_workers_entries_to_one_that_can_send(
        gw, monkeypatch):
    """A worker without a bind (down, or standing by for a bind slot) takes over nothing: it
    would hold the entries unread, and the messages would wait on it."""
    queue_many(gw, 1)
    Worker(gw).run_once()  # relayed to the stream
    stream = OutboundStream(gw.redis, gw.settings.REDIS_PREFIX)
    stream.ensure_group()
    assert stream.read("dead-worker", 10, None)  # a worker read it and died
    rounds = Counter[str]()
    keep = Feeder._keep_leases
    monkeypatch.setattr(Feeder, "_keep_leases",
                        lambda self: (rounds.update([self.consumer]), keep(self))[1])
    stopping = threading.Event()
    standby = Feeder(gw, stream, "standing-by", stopping)
    standby.paused.set()  # as SmppWorker keeps it until bound
    thread = threading.Thread(target=standby.run, daemon=True)
    thread.start()
    try:  # rounds enough for the entry to idle past SMPP_RECLAIM_AFTER, and more
        wait_until(lambda: rounds["standing-by"] >= 5, what="five rounds of the feeder")
    finally:
        stopping.set()
        thread.join(timeout=10)
    [pending] = gw.redis.xpending_range(stream.key, GROUP, "-", "+", 10)
    assert pending["consumer"] == "dead-worker"  # left for a worker that can send


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=10, SMPP_RECLAIM_AFTER=1)
def test_two_live_workers_never_send_a_row_twice(gw, smsc):
    phones = queue_many(gw, 30)  # three seconds of work at 10/s: longer than RECLAIM_AFTER
    with running(gw, smsc.port, "bind-a", "bind-b"):
        wait_until(lambda: statuses(gw) == {"delivered": 30}, timeout=30, what="every message")
    assert Counter(len(smsc.messages(phone)) for phone in phones) == {1: 30}


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_MAX_TPS=1000, SMPP_RECLAIM_AFTER=1,
                      SMPP_RESPONSE_TIMEOUT=1)
def test_a_long_message_cut_off_by_a_stop_is_finished_without_repeats(gw, smsc, clock):
    with gw.db.transaction() as session:
        outbox.queue(session, to="+8613600000001", kind="link", body="x" * 200, now=clock())
    while Worker(gw).run_once()[1]:
        pass
    submit = smsc._submit
    throttle_part_two = [True]

    def refuse_part_two(session, pdu):
        if throttle_part_two[0] and pdu["short_message"][5] == 2:
            smsc._respond(session, Pdu("submit_sm_resp", pdu.sequence, Status.RTHROTTLED))
        else:
            submit(session, pdu)

    smsc._submit = refuse_part_two
    with running(gw, smsc.port, "w1"):
        wait_until(lambda: smsc.submits == 1, what="part 1")
    assert statuses(gw) == {"sending": 1}  # stopped with part 2 unsent
    throttle_part_two[0] = False
    clock.advance(seconds=2)  # its lease runs out
    with running(gw, smsc.port, "w2"):
        wait_until(lambda: statuses(gw) == {"delivered": 1}, what="the message")
    assert smsc.submits == 2  # part 1 was not sent again
    [message] = smsc.messages("+8613600000001")
    assert message.text == "x" * 200 and message.parts == 2


def test_a_reply_part_delivered_twice_is_answered_both_times(gw):
    worker = SmppWorker(gw, host="127.0.0.1", port=1, consumer="unit")
    _, esm_class, parts = codec.encode_parts("y" * 200, 9)

    def deliver(sequence, body):
        return DeliverSm(sequence=sequence, sender="+8613800138000", esm_class=esm_class,
                         data_coding=0, body=body)

    replies: list[bytes] = []
    on_reply = worker.deliver_sm.on_reply
    on_reply(worker._generation, deliver(1, parts[0]), replies)
    on_reply(worker._generation, deliver(3, parts[0]), replies)  # the SMSC offers part 1 again
    on_reply(worker._generation, deliver(2, parts[1]), replies)
    handed = worker.recorder.results.get_nowait()
    assert handed.text == "y" * 200 and sorted(handed.sequences) == [1, 2, 3]


def test_a_reply_offered_again_while_it_waits_is_acted_on_once(gw, monkeypatch):
    """The SMSC offers a reply again when its answer is late (a worker behind on a slow
    database): the copies join the waiting reply and are answered with it, so a backlog of
    late answers cannot feed itself."""
    worker = SmppWorker(gw, host="127.0.0.1", port=1, consumer="unit")
    handled = []

    def receive_together(_gw, messages):
        handled.extend(messages)
        return [True] * len(messages)

    monkeypatch.setattr(inbound, "receive_together", receive_together)

    def offer(sequence):
        worker.deliver_sm.on_reply(worker._generation, DeliverSm(
            sequence=sequence, sender="+8613800138000", esm_class=0, data_coding=0,
            body=b"384921"), [])

    offer(1)
    offer(7)  # offered again before the first was acted on
    worker._generation += 1  # the connection was lost and made again
    offer(2)
    waiting = worker.recorder.results.get_nowait()
    assert worker.recorder.results.empty()
    worker.recorder._after_commit([waiting])
    assert handled == [("+8613800138000", "384921")]
    assert worker._responses.get_nowait() == (1, 2, Status.ROK)  # the live connection's copy
    assert worker._responses.empty()
    offer(3)  # after it was acted on, a copy is a reply again
    assert worker.recorder.results.get_nowait().sequences == [3]


@pytest.mark.settings(SMS_PROVIDER="smpp", SMPP_DLR_TIMEOUT=1)
def test_a_database_outage_does_not_break_the_smpp_link(gw, smsc, monkeypatch):
    failures = []

    def database_down(self):
        failures.append(1)
        raise OperationalError("select", {}, Exception("database down"))

    monkeypatch.setattr(Recorder, "_find_silent_parts", database_down)
    with running(gw, smsc.port, "w1"):
        wait_until(lambda: len(failures) >= 3, what="several failed rounds")
    assert smsc.binds == 1


def test_a_receipt_quoting_its_message_is_read_from_its_header():
    text = ("id:1A2B sub:001 dlvrd:001 submit date:2611231055 done date:2611231055 "
            "stat:DELIVRD err:000 text:id:77 stat:UNDELIV")
    assert codec.parse_receipt(text) == codec.Receipt("1A2B", 2, "000")


@pytest.mark.parametrize("data_coding, body, text", [
    (0x18, "你好".encode("utf-16-be"), "你好"),  # UCS-2 with a message class
    (0xF0, b"hi", "hi"), (0xF4, b"\xe9", "é"), (0x11, b"hi", "hi")])
def test_data_codings_with_message_classes_are_read(data_coding, body, text):
    assert codec.decode_text(body, data_coding) == text


def test_a_receipt_that_comes_before_its_part_is_recorded_is_asked_for_again(gw, clock):
    """Another bind's receipt can overtake the recording of the part: it is refused (to come
    again), not dropped."""
    with gw.db.transaction() as session:
        queued = outbox.queue(session, to="+8613600000002", kind="link", body="hi", now=clock())
        message = session.get(OutboxMessage, queued.id)
        message.status, message.parts = "submitted", 1
        outbox_id = message.id
    answers: list[tuple[int, int, int]] = []
    recorder = Recorder(gw, OutboundStream(gw.redis, gw.settings.REDIS_PREFIX),
                        settled=lambda ids: None, respond=lambda *a: answers.append(a))

    def receipt(sequence: int) -> list:
        batch = [Inbound(1, [sequence], codec.Receipt("abc", codec.DELIVERED))]
        recorder._commit(batch)
        recorder._after_commit(batch)
        return batch

    receipt(7)
    assert answers == [(1, 7, Status.RX_T_APPN)] and statuses(gw) == {"submitted": 1}
    with gw.db.transaction() as session:  # the submitting worker records its part
        session.add(SmsPart(outbox_id=outbox_id, part=1, total=1, provider="smpp",
                            message_id="abc", status="submitted", submitted_at=clock(),
                            queries=0))
    receipt(8)
    assert answers[-1] == (1, 8, Status.ROK) and statuses(gw) == {"delivered": 1}


def test_a_batch_of_replies_is_handed_over_together_and_each_answered_by_its_outcome(
        gw, monkeypatch):
    """The replies of a batch go to the inbound function in one call, in the order they came;
    a reply it could not act on is refused for now, so that the SMSC offers it again."""
    handed: list[list[tuple[str, str]]] = []

    def receive_together(_gw, messages):
        handed.append(list(messages))
        return [text != "2" for _, text in messages]

    monkeypatch.setattr(inbound, "receive_together", receive_together)
    answers: list[tuple[int, int, int]] = []
    recorder = Recorder(gw, OutboundStream(gw.redis, gw.settings.REDIS_PREFIX),
                        settled=lambda ids: None, respond=lambda *a: answers.append(a))
    batch = [Inbound(1, [1], sender="+8613600000001", text="1"),
             Inbound(1, [2], sender="+8613600000001", text="2"),
             Inbound(1, [3], sender="+8613600000002", text="3")]
    recorder._after_commit(batch)
    assert handed == [[("+8613600000001", "1"), ("+8613600000001", "2"),
                       ("+8613600000002", "3")]]
    assert answers == [(1, 1, Status.ROK), (1, 2, Status.RX_T_APPN), (1, 3, Status.ROK)]
