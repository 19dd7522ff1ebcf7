"""The bus emulator answers clients this project did not write: dynamixel-sdk's own API, and
raw bytes from the ROBOTIS e-manual's Protocol 2.0 examples sent through pyserial."""

from __future__ import annotations

import termios
import time

import dynamixel_sdk as sdk
import pytest
import serial

from slac_robot.hardware.control_table import MODEL_BY_NAME, REG, STATE_BLOCK
from slac_robot.hardware.emulator import BusEmulator, EmulatedMotor
from slac_robot.hardware.emulator.protocol import PacketReader, crc16, encode, status_packet, stuff, unstuff

XM = MODEL_BY_NAME["XM430-W350"]
XH = MODEL_BY_NAME["XH430-V210"]
ACCESS, RANGE, LENGTH, CRC, INSTRUCTION = 7, 4, 5, 3, 2

# Worked examples of the ROBOTIS e-manual (Protocol 2.0 page), servo ID 1: an XM430-W210
# (model number 1030) with firmware 38 answering a ping, a write of Goal Position 512, a read of
# Present Position, a reboot, and an empty status packet.
MANUAL_PING = bytes.fromhex("FF FF FD 00 01 03 00 01 19 4E")
MANUAL_PING_STATUS = bytes.fromhex("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")
MANUAL_WRITE_GOAL_512 = bytes.fromhex("FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89")
MANUAL_READ_PRESENT_POSITION = bytes.fromhex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15")
MANUAL_REBOOT = bytes.fromhex("FF FF FD 00 01 03 00 08 2F 4E")
MANUAL_EMPTY_STATUS = bytes.fromhex("FF FF FD 00 01 04 00 55 00 A1 0C")


@pytest.fixture
def emulator():
    motors = {1: EmulatedMotor(1, XM), 2: EmulatedMotor(2, XH), 3: EmulatedMotor(3, XM)}
    with BusEmulator(motors) as emu:
        yield emu


def raw_exchange(path: str, request: bytes, reply_bytes: int, timeout_s: float = 1.0) -> bytes:
    with serial.Serial(path, 1_000_000, timeout=timeout_s) as line:
        line.write(request)
        return line.read(reply_bytes)


# -- framing, checked against the manual's bytes ------------------------------------------------
@pytest.mark.parametrize(
    "packet", [MANUAL_PING, MANUAL_PING_STATUS, MANUAL_WRITE_GOAL_512, MANUAL_READ_PRESENT_POSITION, MANUAL_REBOOT, MANUAL_EMPTY_STATUS]
)
def test_crc_matches_the_manuals_examples(packet):
    assert crc16(packet[:-2]) == packet[-2] | (packet[-1] << 8)


def test_encode_reproduces_the_manuals_packets():
    assert encode(1, 0x01) == MANUAL_PING
    assert encode(1, 0x03, bytes([0x74, 0x00, 0x00, 0x02, 0x00, 0x00])) == MANUAL_WRITE_GOAL_512
    assert encode(1, 0x02, bytes([0x84, 0x00, 0x04, 0x00])) == MANUAL_READ_PRESENT_POSITION
    assert status_packet(1, 0, bytes([0x06, 0x04, 0x26])) == MANUAL_PING_STATUS
    assert status_packet(1, 0) == MANUAL_EMPTY_STATUS


def test_our_crc_agrees_with_the_sdks_on_arbitrary_bytes(ph):
    data = bytes(range(256)) * 2
    assert crc16(data) == ph.updateCRC(0, list(data), len(data))


def test_byte_stuffing_round_trips_and_hides_the_header():
    payload = b"\x03\xff\xff\xfd\x00\xff\xff\xfd"
    stuffed = stuff(payload)
    assert stuffed == b"\x03\xff\xff\xfd\xfd\x00\xff\xff\xfd\xfd"
    assert unstuff(stuffed) == payload
    (packet,) = PacketReader().feed(b"\x00\x42" + encode(7, 0x03, payload[1:]))  # line noise first
    assert (packet.packet_id, packet.instruction, packet.params, packet.crc_ok) == (7, 0x03, payload[1:], True)


# -- raw bytes from the manual through pyserial -------------------------------------------------
def test_manual_ping_gets_the_manuals_status_packet():
    motor = EmulatedMotor(1, MODEL_BY_NAME["XM430-W210"])
    motor.set("firmware_version", 38)
    with BusEmulator({1: motor}) as emu:
        assert raw_exchange(emu.device_path, MANUAL_PING, len(MANUAL_PING_STATUS)) == MANUAL_PING_STATUS


def test_manual_write_read_and_reboot_packets(emulator):
    path = emulator.device_path
    assert raw_exchange(path, MANUAL_WRITE_GOAL_512, len(MANUAL_EMPTY_STATUS)) == MANUAL_EMPTY_STATUS
    assert emulator.motors[1].get("goal_position") == 512
    emulator.motors[1].set("present_position", 0x01020304)
    reply = raw_exchange(path, MANUAL_READ_PRESENT_POSITION, 15)
    assert reply[:9] == bytes.fromhex("FF FF FD 00 01 08 00 55 00")
    assert reply[9:13] == bytes([0x04, 0x03, 0x02, 0x01])
    assert crc16(reply[:-2]) == reply[-2] | (reply[-1] << 8)
    emulator.motors[1].latch_hardware_error(0x04)
    assert raw_exchange(path, MANUAL_REBOOT, len(MANUAL_EMPTY_STATUS))[8] == 0x80  # Alert, until...
    assert emulator.motors[1].hardware_error == 0  # ...the reboot cleared it


def test_a_packet_with_a_bad_crc_gets_a_crc_error(emulator):
    broken = MANUAL_PING[:-1] + bytes([MANUAL_PING[-1] ^ 0x01])
    reply = raw_exchange(emulator.device_path, broken, 11)
    assert reply[8] == CRC


def test_an_unknown_instruction_gets_an_instruction_error(emulator):
    reply = raw_exchange(emulator.device_path, encode(2, 0x77), 11)
    assert reply[4] == 2 and reply[8] == INSTRUCTION


# -- dynamixel-sdk, instruction by instruction --------------------------------------------------
def test_ping_and_broadcast_ping(port, ph):
    assert ph.ping(port, 2) == (XH.number, sdk.COMM_SUCCESS, 0)
    _, result, _ = ph.ping(port, 9)
    assert result == sdk.COMM_RX_TIMEOUT  # nobody has ID 9
    found, result = ph.broadcastPing(port)
    assert result == sdk.COMM_SUCCESS
    assert {i: v[0] for i, v in found.items()} == {1: XM.number, 2: XH.number, 3: XM.number}


def test_read_and_write_of_every_size(port, ph):
    assert ph.write1ByteTxRx(port, 1, REG["led"].address, 1) == (sdk.COMM_SUCCESS, 0)
    assert ph.write2ByteTxRx(port, 1, REG["position_p_gain"].address, 640) == (sdk.COMM_SUCCESS, 0)
    assert ph.write4ByteTxRx(port, 1, REG["goal_position"].address, 3000) == (sdk.COMM_SUCCESS, 0)
    assert ph.read1ByteTxRx(port, 1, REG["led"].address) == (1, sdk.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, 1, REG["position_p_gain"].address) == (640, sdk.COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 1, REG["goal_position"].address) == (3000, sdk.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, 2, REG["model_number"].address) == (XH.number, sdk.COMM_SUCCESS, 0)


def test_stuffed_bytes_survive_a_write_and_a_read(port, ph):
    value = 0x00FDFFFF  # on the wire: FF FF FD 00, which both sides must stuff
    assert ph.write4ByteTxRx(port, 1, REG["homing_offset"].address, value) == (sdk.COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 1, REG["homing_offset"].address) == (value, sdk.COMM_SUCCESS, 0)


def test_read_only_registers_refuse_writes(port, ph, emulator):
    assert ph.write2ByteTxRx(port, 1, REG["model_number"].address, 7) == (sdk.COMM_SUCCESS, ACCESS)
    assert ph.write4ByteTxRx(port, 1, REG["present_position"].address, 7) == (sdk.COMM_SUCCESS, ACCESS)
    assert emulator.motors[1].get("model_number") == XM.number


def test_eeprom_is_writable_only_with_torque_off(port, ph, emulator):
    mode = REG["operating_mode"].address
    assert ph.write1ByteTxRx(port, 1, mode, 4) == (sdk.COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 1, REG["torque_enable"].address, 1) == (sdk.COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 1, mode, 3) == (sdk.COMM_SUCCESS, ACCESS)
    assert emulator.motors[1].get("operating_mode") == 4
    assert ph.write1ByteTxRx(port, 1, REG["torque_enable"].address, 0) == (sdk.COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 1, mode, 3) == (sdk.COMM_SUCCESS, 0)


def test_values_out_of_range_and_split_registers_are_refused(port, ph, emulator):
    assert ph.write1ByteTxRx(port, 1, REG["operating_mode"].address, 2) == (sdk.COMM_SUCCESS, RANGE)
    assert ph.write4ByteTxRx(port, 1, REG["max_position_limit"].address, 3000) == (sdk.COMM_SUCCESS, 0)
    assert ph.write4ByteTxRx(port, 1, REG["goal_position"].address, 3500) == (sdk.COMM_SUCCESS, RANGE)
    assert ph.write2ByteTxRx(port, 1, REG["goal_position"].address, 100) == (sdk.COMM_SUCCESS, LENGTH)
    assert emulator.motors[1].get("goal_position") == 0


def test_reg_write_waits_for_action(port, ph, emulator):
    goal = REG["goal_position"].address
    assert ph.regWriteTxRx(port, 1, goal, 4, [0xD0, 0x07, 0, 0]) == (sdk.COMM_SUCCESS, 0)
    assert emulator.motors[1].get("goal_position") == 0
    assert ph.read1ByteTxRx(port, 1, REG["registered_instruction"].address)[0] == 1
    # Broadcast, as ACTION is meant to be (one moment for all servos; no status packets). The SDK
    # does not wait for an ACTION's status, so a unicast one would be left on the line.
    assert ph.action(port, sdk.BROADCAST_ID) == sdk.COMM_SUCCESS
    assert ph.read4ByteTxRx(port, 1, goal) == (2000, sdk.COMM_SUCCESS, 0)  # handled after ACTION
    assert ph.read1ByteTxRx(port, 1, REG["registered_instruction"].address)[0] == 0


def test_sync_write_then_sync_read(port, ph, emulator):
    for motor_id in (1, 2, 3):
        emulator.motors[motor_id].set("torque_enable", 1)
    writer = sdk.GroupSyncWrite(port, ph, REG["goal_position"].address, 4)
    for motor_id, goal in ((1, 1000), (2, 2000), (3, 3000)):
        assert writer.addParam(motor_id, list(goal.to_bytes(4, "little")))
    assert writer.txPacket() == sdk.COMM_SUCCESS
    reader = sdk.GroupSyncRead(port, ph, *STATE_BLOCK)
    for motor_id in (1, 2, 3):
        reader.addParam(motor_id)
    assert reader.txRxPacket() == sdk.COMM_SUCCESS
    assert [reader.getData(i, REG["present_position"].address, 4) for i in (1, 2, 3)] == [1000, 2000, 3000]


def test_bulk_write_then_bulk_read(port, ph, emulator):
    writer = sdk.GroupBulkWrite(port, ph)
    assert writer.addParam(1, REG["led"].address, 1, [1])
    assert writer.addParam(2, REG["goal_position"].address, 4, list((1234).to_bytes(4, "little")))
    assert writer.txPacket() == sdk.COMM_SUCCESS
    reader = sdk.GroupBulkRead(port, ph)
    assert reader.addParam(1, REG["led"].address, 1)
    assert reader.addParam(2, REG["goal_position"].address, 4)
    assert reader.txRxPacket() == sdk.COMM_SUCCESS
    assert reader.getData(1, REG["led"].address, 1) == 1
    assert reader.getData(2, REG["goal_position"].address, 4) == 1234


def test_reboot_clears_a_latched_hardware_error(port, ph, emulator):
    emulator.hardware_error(3, 0x20)
    _, _, error = ph.ping(port, 3)
    assert error & 0x80  # the Alert bit
    assert ph.read1ByteTxRx(port, 3, REG["hardware_error_status"].address)[0] == 0x20
    assert ph.write1ByteTxRx(port, 3, REG["torque_enable"].address, 1) == (sdk.COMM_SUCCESS, 0x80 | RANGE)
    assert ph.reboot(port, 3) == (sdk.COMM_SUCCESS, 0x80)  # answered before the restart
    assert ph.ping(port, 3) == (XM.number, sdk.COMM_SUCCESS, 0)


def test_extended_position_goals_stop_at_256_turns_and_clear_restarts_the_count(port, ph, emulator):
    motor = emulator.motors[1]
    assert ph.write1ByteTxRx(port, 1, REG["operating_mode"].address, 4) == (sdk.COMM_SUCCESS, 0)
    goal = REG["goal_position"].address
    assert ph.write4ByteTxRx(port, 1, goal, 1_048_575) == (sdk.COMM_SUCCESS, 0)
    assert ph.write4ByteTxRx(port, 1, goal, (-1_048_576) & 0xFFFFFFFF) == (sdk.COMM_SUCCESS, RANGE)
    motor.sense_shaft(300 * 4096 + 1000)  # the shaft turned 300 times since power-up
    assert ph.read4ByteTxRx(port, 1, REG["present_position"].address) == (300 * 4096 + 1000, sdk.COMM_SUCCESS, 0)
    assert ph.clearMultiTurn(port, 1) == (sdk.COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 1, REG["present_position"].address) == (1000, sdk.COMM_SUCCESS, 0)
    # Goals now count from there: Goal Position 1000 is the shaft where it stands.
    assert ph.write4ByteTxRx(port, 1, goal, 1000) == (sdk.COMM_SUCCESS, 0)
    assert motor.shaft_goal_counts() == 300 * 4096 + 1000
    motor.sense_shaft(-5 * 4096 - 10)  # a turning shaft refuses the clear (Result Fail)
    motor.set("present_velocity", 3)
    assert ph.clearMultiTurn(port, 1) == (sdk.COMM_SUCCESS, 1)
    assert motor.get("present_position") == -5 * 4096 - 10 - 300 * 4096


def test_a_reboot_restarts_the_multi_turn_count_within_one_turn(port, ph, emulator):
    emulator.motors[3].sense_shaft(-3 * 4096 + 7)
    assert ph.reboot(port, 3) == (sdk.COMM_SUCCESS, 0)
    assert ph.read4ByteTxRx(port, 3, REG["present_position"].address) == (7, sdk.COMM_SUCCESS, 0)


def test_status_return_level_one_answers_reads_but_not_writes(port, ph):
    assert ph.write1ByteTxRx(port, 2, REG["status_return_level"].address, 1) == (sdk.COMM_SUCCESS, 0)
    assert ph.write1ByteTxRx(port, 2, REG["led"].address, 1)[0] == sdk.COMM_RX_TIMEOUT
    assert ph.read1ByteTxRx(port, 2, REG["led"].address) == (1, sdk.COMM_SUCCESS, 0)


# -- faults and accounting ----------------------------------------------------------------------
def test_injected_faults_reach_the_sdk(port, ph, emulator):
    emulator.drop_status()
    assert ph.ping(port, 1)[1] == sdk.COMM_RX_TIMEOUT
    emulator.corrupt_crc(motor_id=2)
    assert ph.ping(port, 1)[1] == sdk.COMM_SUCCESS  # the fault waits for motor 2
    assert ph.ping(port, 2)[1] == sdk.COMM_RX_CORRUPT
    emulator.overheat(1, 85)
    assert ph.read1ByteTxRx(port, 1, REG["present_temperature"].address) == (85, sdk.COMM_SUCCESS, 0x80)
    assert ph.read1ByteTxRx(port, 1, REG["hardware_error_status"].address)[0] == 0x04
    assert ph.ping(port, 1)[1] == sdk.COMM_SUCCESS


def test_a_late_reply_misses_the_sdks_timeout(port, ph, emulator):
    emulator.delay_replies(0.1)
    started = time.monotonic()
    assert ph.ping(port, 1)[1] == sdk.COMM_RX_TIMEOUT
    time.sleep(max(0.0, 0.15 - (time.monotonic() - started)))
    port.clearPort()
    assert ph.ping(port, 1) == (XM.number, sdk.COMM_SUCCESS, 0)


def test_a_disconnect_makes_the_port_fail(port, ph, emulator):
    emulator.disconnect()
    with pytest.raises((serial.SerialException, termios.error)):
        ph.ping(port, 1)


def test_wire_time_is_accounted_at_the_baud_rate(port, ph, emulator):
    emulator.motors[2].set("return_delay_time", 0)
    before = emulator.stats.copy()
    reader = sdk.GroupSyncRead(port, ph, *STATE_BLOCK)
    for motor_id in (1, 2, 3):
        reader.addParam(motor_id)
    assert reader.txRxPacket() == sdk.COMM_SUCCESS
    stats = emulator.stats
    request = 14 + 3  # header, ID, length, instruction, CRC (10) + address, length (4) + 3 IDs
    reply = 11 + 10  # status packet with 10 data bytes
    assert stats.bytes_in - before.bytes_in == request
    assert stats.bytes_out - before.bytes_out == 3 * reply
    factory_delay_s = 250 * 2e-6  # motors 1 and 3 still have the factory Return Delay Time
    expected = (request + 3 * reply) * 10 / 1_000_000 + 2 * factory_delay_s
    assert stats.wire_time_s - before.wire_time_s == pytest.approx(expected)
