"""A Modbus server on pymodbus (an implementation nobody here wrote) holding the
thermostat of device-models/thermostat, for interoperability tests.

    python pymodbus_server.py --tcp PORT
    python pymodbus_server.py --serial /dev/pts/N --baud 9600
"""
import argparse
import asyncio
import logging

from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer


def block(values):
    # The device context adds 1 to every PDU address, so a block starting at 1 puts
    # values[a] at PDU address a.
    return ModbusSequentialDataBlock(1, values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--serial")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--unit", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    holding = [0] * 32
    holding[10] = 200  # setpoint 20.0 (x 0.1)
    holding[11] = 1  # mode
    inputs = [0] * 32
    inputs[0] = (-123) & 0xFFFF  # temperature -12.3 (int16 x 0.1)
    inputs[1] = 45  # humidity
    coils = [False] * 32
    coils[0] = True  # heating
    device = ModbusDeviceContext(
        hr=block(holding), ir=block(inputs), co=block(coils), di=block([False] * 32)
    )
    context = ModbusServerContext(devices={args.unit: device}, single=False)
    if args.tcp:
        coro = StartAsyncTcpServer(context, address=("127.0.0.1", args.tcp))
    else:
        coro = StartAsyncSerialServer(
            context, port=args.serial, baudrate=args.baud, framer=FramerType.RTU
        )
    print("serving", flush=True)
    asyncio.run(coro)


if __name__ == "__main__":
    main()
