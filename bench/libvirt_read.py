# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark method (d): read balloon stats of libvirt domains through libvirt's API, no Ansible.

    python3 libvirt_read.py --uri qemu:///system --prefix qbbench- [--mode getall|memorystats]

getall: one virConnectGetAllDomainStats(VIR_DOMAIN_STATS_BALLOON) call (the answer is then filtered to
the domains whose name starts with --prefix); memorystats: virDomainMemoryStats() per domain. Needs libvirt-python
(Debian: python3-libvirt). Prints one JSON line; bench/run.py times the whole process.
"""

from __future__ import annotations

import argparse
import json
import sys

import libvirt  # pylint: disable=import-error


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--uri', default='qemu:///system')
    parser.add_argument('--prefix', required=True)
    parser.add_argument('--mode', choices=('getall', 'memorystats'), default='getall')
    args = parser.parse_args(argv)
    connection = libvirt.open(args.uri)
    try:
        if args.mode == 'getall':
            stats = connection.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_BALLOON)
            read = {domain.name(): values for domain, values in stats if domain.name().startswith(args.prefix)}
        else:
            domains = [domain for domain in connection.listAllDomains() if domain.name().startswith(args.prefix)]
            read = {domain.name(): domain.memoryStats() for domain in domains}
    finally:
        connection.close()
    print(json.dumps({'domains': len(read), 'fields': sorted(set(key for values in read.values() for key in values))}))
    return 0 if read else 1


if __name__ == '__main__':
    sys.exit(main())
