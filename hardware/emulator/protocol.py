"""Dynamixel Protocol 2.0 framing, written from the ROBOTIS e-manual (not from the SDK), so that
tests of the SDK against the emulator check two independent implementations against each other.

A packet on the wire: FF FF FD 00 | ID | LEN_L LEN_H | INST | [ERR] PARAMS | CRC_L CRC_H.
LEN counts everything after itself (instruction, error, parameters, CRC). Inside the packet,
every FF FF FD is followed by a stuffed FD so that a header never appears in the payload.
CRC-16: polynomial 0x8005, initial value 0, not reflected, over all bytes from the header on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

HEADER = b"\xff\xff\xfd\x00"
STUFFING_PATTERN = b"\xff\xff\xfd"
MIN_PACKET_BYTES = 10  # header 4, ID, LEN 2, INST, CRC 2
MAX_PACKET_BYTES = 1024


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    FAST_SYNC_READ = 0x8A
    BULK_READ = 0x92
    BULK_WRITE = 0x93


class ErrorNumber(IntEnum):
    """The low 7 bits of a status packet's error byte."""

    NONE = 0
    RESULT_FAIL = 1
    INSTRUCTION = 2
    CRC = 3
    DATA_RANGE = 4
    DATA_LENGTH = 5
    DATA_LIMIT = 6
    ACCESS = 7


ALERT_BIT = 0x80  # set in a status packet's error byte while Hardware Error Status is non-zero


def _make_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes) -> int:
    """CRC-16 (poly 0x8005, init 0, MSB first) as Protocol 2.0 uses it."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def stuff(payload: bytes) -> bytes:
    """Adds an FD after every FF FF FD in the payload (instruction onwards)."""
    return payload.replace(STUFFING_PATTERN, STUFFING_PATTERN + b"\xfd")


def unstuff(payload: bytes) -> bytes:
    """Removes the FD that `stuff` added."""
    return payload.replace(STUFFING_PATTERN + b"\xfd", STUFFING_PATTERN)


def encode(packet_id: int, instruction: int, params: bytes = b"", error: int | None = None) -> bytes:
    """One packet, stuffed and with its CRC. `error` is given for status packets only."""
    body = bytes([instruction]) + (bytes([error]) if error is not None else b"") + bytes(params)
    body = stuff(body)
    length = len(body) + 2
    without_crc = HEADER + bytes([packet_id, length & 0xFF, length >> 8]) + body
    crc = crc16(without_crc)
    return without_crc + bytes([crc & 0xFF, crc >> 8])


def status_packet(packet_id: int, error: int, params: bytes = b"") -> bytes:
    """A status packet (instruction 0x55) from `packet_id`."""
    return encode(packet_id, Instruction.STATUS, params, error=error)


@dataclass(frozen=True)
class Packet:
    """A received instruction packet (unstuffed) and whether its CRC held."""

    packet_id: int
    instruction: int
    params: bytes
    crc_ok: bool
    wire_bytes: int


class PacketReader:
    """Splits a byte stream into packets; bytes before a header are skipped (line noise)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Adds received bytes; returns the complete packets they finish."""
        self._buffer += data
        packets = []
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                # keep a possible partial header at the end
                del self._buffer[: max(0, len(self._buffer) - 3)]
                return packets
            del self._buffer[:start]
            if len(self._buffer) < 7:
                return packets
            length = self._buffer[5] | (self._buffer[6] << 8)
            total = 7 + length
            if length < 3 or total > MAX_PACKET_BYTES:
                del self._buffer[:1]  # not a real header: look further
                continue
            if len(self._buffer) < total:
                return packets
            raw = bytes(self._buffer[:total])
            del self._buffer[:total]
            crc_ok = crc16(raw[:-2]) == (raw[-2] | (raw[-1] << 8))
            body = unstuff(raw[7:-2])
            packets.append(Packet(raw[4], body[0], body[1:], crc_ok, total))
