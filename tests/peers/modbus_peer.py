"""Modbus peers for edgeguard's tests.

    modbus_peer.py server --tcp PORT [--units 1,2]      pymodbus TCP server
    modbus_peer.py server --serial DEVICE --units 1,2    pymodbus RTU server (9600 8N1)
    modbus_peer.py server --rtu-over-tcp PORT            RTU frames over TCP (a serial gateway)
    modbus_peer.py proxy PORT UPSTREAM_PORT [--delay-every N --delay S] [--silent-file F]
                                            [--wrong-unit-every N]

The server holds the register map below on every unit: raw register words
written by hand for every type and byte order, so the client's decoding is
checked against bytes, not against another library's encoder. Addresses past
the map answer exception 2 (illegal data address).

The proxy forwards TCP frames to a server. With --delay-every N it holds
every Nth response for --delay seconds (a late answer after the client's
timeout); while --silent-file exists it accepts and reads requests but never
answers (a device that hangs). With --wrong-unit-every N every Nth response
carries unit id + 1 (another device with the same address on the bus
answered): a faulty device, since no real server misbehaves on purpose.

Each peer prints "ready" on stdout once it listens.
"""

import argparse
import logging
import asyncio
import os
import sys

# Holding registers from address 0 (unit ids: all served units).
HOLDING = [
    0x1234,  # 0   u16 = 4660
    0xFFFE,  # 1   i16 = -2
    0x4049, 0x0FDB,  # 2   f32 ABCD = pi
    0x0FDB, 0x4049,  # 4   f32 CDAB = pi
    0x4940, 0xDB0F,  # 6   f32 BADC = pi
    0xDB0F, 0x4940,  # 8   f32 DCBA = pi
    0x075B, 0xCD15,  # 10  u32 ABCD = 123456789
    0xFFFE, 0xFFFF,  # 12  i32 CDAB = -2
    0x0102, 0x0304, 0x0506, 0x0708,  # 14  u64 ABCD = 72623859790382856
    0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF,  # 18  i64 DCBA = -2
    0x0000, 0x0000, 0x0000, 0x3FF8,  # 22  f64 CDAB = 1.5
    0x3C00,  # 26  f16 = 1.0
    0x3412,  # 27  u16 BA = 4660
    0x8005,  # 28  bits 0, 2, 15 set
    0x4547, 0x2D31, 0x3030,  # 29  string "EG-100"
    235,  # 32  u16 235 (scale 0.1, offset -3 -> 20.5)
    0x41AC, 0x0000,  # 33  f32 ABCD = 21.5
]
INPUT = [500, 501, 502, 503]
COILS = [True, False, True, True, False, False, False, True]
DISCRETE = [False, True, False, False]


def devices(units):
    from pymodbus.simulator import SimData, SimDevice, DataType

    def block(words):
        return [SimData(address=0, values=list(words), datatype=DataType.REGISTERS)]

    def bits(values):
        return [SimData(address=0, values=list(values), datatype=DataType.BITS)]

    return [
        SimDevice(id=u, simdata=(bits(COILS), bits(DISCRETE), block(HOLDING), block(INPUT)))
        for u in units
    ]


async def serve(args):
    units = [int(u) for u in args.units.split(",")]
    HOLDING.extend([0] * max(0, args.holding_size - len(HOLDING)))
    if args.tcp or args.rtu_over_tcp:
        from pymodbus.server import ModbusTcpServer
        from pymodbus import FramerType

        framer = FramerType.RTU if args.rtu_over_tcp else FramerType.SOCKET
        port = args.rtu_over_tcp or args.tcp
        server = ModbusTcpServer(devices(units), address=("127.0.0.1", port), framer=framer)
    else:
        from pymodbus.server import ModbusSerialServer
        from pymodbus import FramerType

        server = ModbusSerialServer(
            devices(units),
            framer=FramerType.RTU,
            port=args.serial,
            baudrate=9600,
            # pyserial cannot set even parity on a socat pty (EINVAL in
            # non-blocking mode): the tests run the bus at 8N1.
            parity="N",
            stopbits=1,
            bytesize=8,
        )
        # A unit that is not on the bus does not answer. (pymodbus answers
        # exception 4 for unknown ids with SimDevice; dropping frames with
        # trace_packet wedges its RTU framer. Its own ignore_missing_devices
        # path returns early like this.)
        from pymodbus.server.requesthandler import ServerRequestHandler

        handle = ServerRequestHandler.handle_request

        async def handle_known(self):
            if self.last_pdu is not None and self.last_pdu.dev_id not in units:
                return
            await handle(self)

        ServerRequestHandler.handle_request = handle_known
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.3)
    if task.done():
        task.result()  # raises why the server could not start
    print("ready", flush=True)
    await task


async def proxy(args):
    count = 0

    async def handle(reader, writer):
        nonlocal count
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", args.upstream)
        except OSError:
            writer.close()
            return
        try:
            while True:
                head = await reader.readexactly(6)
                length = int.from_bytes(head[4:6], "big")
                body = await reader.readexactly(length)
                if args.silent_file and os.path.exists(args.silent_file):
                    continue  # swallow the request: the device hangs
                up_w.write(head + body)
                await up_w.drain()
                rhead = await up_r.readexactly(6)
                rbody = await up_r.readexactly(int.from_bytes(rhead[4:6], "big"))
                count += 1
                if args.delay_every and count % args.delay_every == 0:
                    await asyncio.sleep(args.delay)
                if args.wrong_unit_every and count % args.wrong_unit_every == 0:
                    rbody = bytes([(rbody[0] + 1) % 256]) + rbody[1:]
                writer.write(rhead + rbody)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            up_w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--tcp", type=int)
    s.add_argument("--serial")
    s.add_argument("--rtu-over-tcp", type=int, help="RTU frames on a TCP port (a serial gateway)")
    s.add_argument("--units", default="1")
    s.add_argument("--holding-size", type=int, default=0, help="extend the holding registers with zeros")
    x = sub.add_parser("proxy")
    x.add_argument("port", type=int)
    x.add_argument("upstream", type=int)
    x.add_argument("--delay-every", type=int, default=0)
    x.add_argument("--delay", type=float, default=0.0)
    x.add_argument("--silent-file")
    x.add_argument("--wrong-unit-every", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        asyncio.run(serve(args) if args.cmd == "server" else proxy(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
