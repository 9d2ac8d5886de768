# -*- coding: utf-8 -*-
# Copyright (c) qmp.balloon contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read the role's CSV report, render its Markdown and its HTML report (headless Chromium), into JSON for the playbooks.

Standard library only, but for the Markdown renderer (markdown-it-py, in the test venvs: rich's dependency);
never imports the code under test.

    python report_check.py csv FILE
        {"header": [...], "rows": [{column: value}, ...]}
    python report_check.py markdown FILE
        rendered by markdown-it-py (CommonMark with GFM tables), as a ticket system would:
        {"headings": [text, ...], "tables": [{"header": [...], "rows": [[cell text, ...], ...]}, ...],
         "html": [raw HTML the renderer would pass through], "paragraphs": [text, ...]}
        or {"skipped": reason} without markdown-it-py
    python report_check.py render CHROMIUM HTML PNG [RRGGBB ...]
        Chromium takes a 1280x900 screenshot of HTML into PNG and, at the same time, dumps the DOM
        after the page's scripts ran; both are decoded:
        {"png": {"width", "height", "bytes", "colour_type", "colours", "background",
                 "background_fraction", "counts": {RRGGBB: pixels of exactly that colour}},
         "tables": {TABLE_ID: [[cell text, ...] per tbody row]}, "seconds": ...}
"""

from __future__ import annotations

import collections
import csv
import html.parser
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

CHROMIUM_TIMEOUT = 90
CHROMIUM_OPTIONS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                    '--disable-component-update', '--disable-sync', '--no-first-run', '--log-level=3',
                    '--window-size=1280,900']
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# bytes per pixel of the 8-bit colour types: grey, RGB, grey+alpha, RGBA
BYTES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}


def read_csv(path):
    with open(path, newline='') as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [dict(zip(header, row)) for row in reader]
    return {'header': header, 'rows': rows}


def read_markdown(path):
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return {'skipped': 'markdown-it-py is not installed (pip install markdown-it-py)'}
    with open(path, encoding='utf-8') as handle:
        tokens = MarkdownIt('commonmark').enable('table').parse(handle.read())
    result = {'headings': [], 'tables': [], 'html': [], 'paragraphs': []}
    table = row = None
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.type == 'heading_open':
            result['headings'].append(following.content)
        elif token.type == 'paragraph_open' and table is None:
            result['paragraphs'].append(following.content)
        elif token.type == 'table_open':
            table = {'header': [], 'rows': []}
        elif token.type == 'tr_open':
            row = []
        elif token.type in ('th_open', 'td_open'):
            row.append(''.join(child.content for child in following.children or []
                               if child.type in ('text', 'text_special', 'code_inline', 'html_inline')) if following else '')
        elif token.type == 'tr_close':
            if table['header'] or tokens[index - 1].type != 'th_close':
                table['rows'].append(row)
            else:
                table['header'] = row
        elif token.type == 'table_close':
            result['tables'].append(table)
            table = None
        elif token.type in ('html_block', 'html_inline'):
            result['html'].append(token.content)
        if token.type == 'inline':
            result['html'].extend(child.content for child in token.children or [] if child.type == 'html_inline')
    return result


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(data, width, height, bpp):
    """Yield each row's raw pixel bytes (PNG filter types 0-4, non-interlaced)."""
    stride = width * bpp
    previous = bytearray(stride)
    position = 0
    for _row in range(height):
        kind = data[position]
        line = bytearray(data[position + 1:position + 1 + stride])
        position += 1 + stride
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((x + y) & 0xFF for x, y in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upper_left = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], upper_left)) & 0xFF
        elif kind != 0:
            raise ValueError('unknown PNG filter type %d' % kind)
        yield bytes(line)
        previous = line


def read_png(path, wanted):
    with open(path, 'rb') as handle:
        blob = handle.read()
    if not blob.startswith(PNG_SIGNATURE):
        raise ValueError('%s is not a PNG file' % path)
    position = len(PNG_SIGNATURE)
    header = None
    compressed = []
    while position < len(blob):
        length, kind = struct.unpack('>I4s', blob[position:position + 8])
        body = blob[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            compressed.append(body)
        elif kind == b'IEND':
            break
    width, height, depth, colour_type, _compression, _filter, interlace = header
    if depth != 8 or colour_type not in BYTES_PER_PIXEL or interlace:
        raise ValueError('unsupported PNG: depth %d, colour type %d, interlace %d' % (depth, colour_type, interlace))
    bpp = BYTES_PER_PIXEL[colour_type]
    data = zlib.decompress(b''.join(compressed))
    counts = collections.Counter()
    for line in _unfilter(data, width, height, bpp):
        # count colours on RGB only (alpha ignored), pixel by pixel
        if colour_type in (2, 6):
            counts.update(line[i:i + 3] for i in range(0, len(line), bpp))
        else:
            counts.update(bytes([line[i]] * 3) for i in range(0, len(line), bpp))
    background, background_count = counts.most_common(1)[0]
    return {
        'width': width, 'height': height, 'bytes': len(blob), 'colour_type': colour_type,
        'colours': len(counts), 'background': background.hex(),
        'background_fraction': round(background_count / float(width * height), 4),
        'counts': dict((colour.lower(), counts.get(bytes.fromhex(colour), 0)) for colour in wanted),
    }


class _Tables(html.parser.HTMLParser):
    """Cell texts of each tbody row of every table that has an id."""

    def __init__(self):
        super().__init__()
        self.tables = {}
        self._table = None
        self._in_body = False
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'table' and attrs.get('id'):
            self._table = self.tables.setdefault(attrs['id'], [])
        elif tag == 'tbody' and self._table is not None:
            self._in_body = True
        elif tag == 'tr' and self._in_body:
            self._row = []
        elif tag in ('td', 'th') and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self._cell is not None:
            self._row.append(''.join(self._cell).strip())
            self._cell = None
        elif tag == 'tr' and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == 'tbody':
            self._in_body = False
        elif tag == 'table':
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_dom(text):
    parser = _Tables()
    parser.feed(text)
    parser.close()
    return parser.tables


def render(chromium, page, png, colours):
    """Screenshot and DOM dump of ``page`` by two Chromium runs at once, each with a throwaway profile."""
    started = time.time()
    profile = tempfile.mkdtemp(prefix='rbs-chromium.')
    try:
        runs = {}
        for kind, extra in (('screenshot', ['--screenshot=' + png]), ('dom', ['--dump-dom'])):
            command = [chromium] + CHROMIUM_OPTIONS + ['--user-data-dir=%s/%s' % (profile, kind)] + extra + ['file://' + page]
            runs[kind] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        outputs = {}
        for kind, process in runs.items():
            try:
                outputs[kind] = process.communicate(timeout=CHROMIUM_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise SystemExit('report_check: chromium %s did not finish within %d s' % (kind, CHROMIUM_TIMEOUT))
            if process.returncode != 0:
                raise SystemExit('report_check: chromium %s exited %d: %s' % (kind, process.returncode, outputs[kind][1][-2000:]))
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return {'png': read_png(png, colours), 'tables': read_dom(outputs['dom'][0]), 'seconds': round(time.time() - started, 1)}


def main(argv):
    if len(argv) == 2 and argv[0] == 'csv':
        result = read_csv(argv[1])
    elif len(argv) == 2 and argv[0] == 'markdown':
        result = read_markdown(argv[1])
    elif len(argv) >= 4 and argv[0] == 'render':
        result = render(argv[1], argv[2], argv[3], argv[4:])
    else:
        sys.stderr.write(__doc__)
        return 2
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
