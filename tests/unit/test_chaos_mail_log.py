"""tools/chaos reads back what the mail sink (aiosmtpd -n) printed: each message's Message-ID and
order, past the session's "mail options" paragraph aiosmtpd prints before the headers."""

from pathlib import Path

from tools.chaos.parties import MailLog

MESSAGE = """---------- MESSAGE FOLLOWS ----------
mail options: ['BODY=8BITMIME']

Subject: Your order CHAOS-1 is confirmed
From: OMS <no-reply@oms.local>
Message-ID: <{nid}@oms.local>
X-OMS-Order-Id: {oid}
Content-Type: multipart/alternative;
 boundary="==b=="
X-Peer: ('127.0.0.1', 57506)

--==b==
Content-Type: text/plain; charset="utf-8"

Message-ID: <not-a-header@body>

--==b==--
------------ END MESSAGE ------------
"""


def test_reads_each_message_once_by_its_headers_only(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(MESSAGE.format(nid="n-before", oid="o-0"))
    mail = MailLog(log)  # what was there before the run is not the run's
    with log.open("a") as f:
        f.write(MESSAGE.format(nid="n-1", oid="o-1") + MESSAGE.format(nid="n-1", oid="o-1")
                + MESSAGE.format(nid="n-2", oid="o-2"))
    assert [(m.message_id, m.order_id) for m in mail.read()] == [
        ("<n-1@oms.local>", "o-1"), ("<n-1@oms.local>", "o-1"), ("<n-2@oms.local>", "o-2")]


def test_no_log_yet_is_no_mail(tmp_path: Path) -> None:
    assert MailLog(tmp_path / "mail.log").read() == []
