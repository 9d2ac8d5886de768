#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A package index on the loopback that writes down every request (role_balloon_stats_prepare test helper).

Serves each subdirectory NAME of ROOT as a PEP 503 "simple" index: /NAME/simple/PROJECT/ lists
the files of ROOT/NAME whose normalised project name is PROJECT (with their sha256, as PyPI
does), /NAME/files/FILE serves them. Every request line goes to LOG (one per line, flushed), so
a test can tell whether pip used the index, and which one.

Usage: index_spy.py ROOT LOG PORTFILE PIDFILE
Listens on 127.0.0.1 on a free port, writes the port to PORTFILE and its pid to PIDFILE, and
serves until killed (runme.sh kills it by that pid). Standard library only.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def normalise(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def project_of(filename):
    """qemu_qmp-0.0.6-py3-none-any.whl -> qemu-qmp; qemu.qmp-0.0.6.tar.gz -> qemu-qmp."""
    return normalise(filename.split('-', 1)[0])


class Handler(BaseHTTPRequestHandler):
    root = None
    log = None

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # requests are written to LOG by do_GET, nothing to stderr

    def answer(self, status, body, content_type='text/html'):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # pylint: disable=invalid-name
        self.log.write('%s\n' % self.path)
        self.log.flush()
        parts = [part for part in self.path.split('?', 1)[0].split('/') if part]
        if len(parts) < 2 or not os.path.isdir(os.path.join(self.root, parts[0])) or parts[0].startswith('.'):
            return self.answer(404, b'not found\n', 'text/plain')
        directory = os.path.join(self.root, parts[0])
        names = sorted(name for name in os.listdir(directory) if not name.startswith('.'))
        if parts[1] == 'simple' and len(parts) == 3:
            links = []
            for name in names:
                if project_of(name) == normalise(parts[2]):
                    with open(os.path.join(directory, name), 'rb') as stream:
                        digest = hashlib.sha256(stream.read()).hexdigest()
                    links.append('<a href="/%s/files/%s#sha256=%s">%s</a><br>' % (
                        parts[0], html.escape(name), digest, html.escape(name)))
            if not links:
                return self.answer(404, b'no such project\n', 'text/plain')
            page = '<!DOCTYPE html><html><body>%s</body></html>\n' % '\n'.join(links)
            return self.answer(200, page.encode('utf-8'))
        if parts[1] == 'files' and len(parts) == 3 and parts[2] in names:
            with open(os.path.join(directory, parts[2]), 'rb') as stream:
                return self.answer(200, stream.read(), 'application/octet-stream')
        return self.answer(404, b'not found\n', 'text/plain')


def main(root, log, portfile, pidfile):
    Handler.root = root
    Handler.log = open(log, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    with open(pidfile, 'w', encoding='utf-8') as stream:
        stream.write('%d\n' % os.getpid())
    with open(portfile + '.tmp', 'w', encoding='utf-8') as stream:
        stream.write('%d\n' % server.server_address[1])
    os.replace(portfile + '.tmp', portfile)
    server.serve_forever()


if __name__ == '__main__':
    main(*sys.argv[1:5])
