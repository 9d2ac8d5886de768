#!/usr/bin/env python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of the collection as execution environments (AWX / Automation Platform) and Galaxy see it.

Run by scripts/run-tests.sh with the interpreter of .venv/ee (ansible-builder, bindep,
galaxy-importer); no container runtime and no network are used.

``ee-check.py ee --source DIR --artifact TARBALL --work DIR``
    1. ``ansible-builder create`` on docs/awx/execution-environment.yml: the Containerfile must
       pin ansible-core to a version of the test venvs (scripts/pins.sh) and ansible-runner
       exactly; the context's requirements.yml must pin qmp.balloon to galaxy.yml's version.
    2. What the build does next, without a container: install the built tarball into an empty
       collections path (the galaxy stage, from the tarball instead of Galaxy) and run the
       context's own introspect.py on it (the builder stage). The Python requirements reported
       must be exactly requirements/controller.txt and requirements/hypervisor.txt, exact pins;
       the system requirements exactly bindep.txt's lines.
    3. bindep.txt resolved with bindep for EL and Debian, per profile, against EXPECTED_BINDEP,
       and the written file parsed by the bindep command as the build's assemble script does.

``ee-check.py importer --source DIR --artifact TARBALL --work DIR --config CFG``
    galaxy-importer on the tarball, with CFG (no ansible-test, so no container). Fails on an
    error, on any warning not in ALLOWED_WARNINGS, and when its result lacks a module, a role,
    module documentation, a docs/*.md page, or disagrees with galaxy.yml / meta/runtime.yml.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys

import yaml
from bindep.depends import Depends, DependsException
from packaging.requirements import InvalidRequirement, Requirement

COLLECTION = 'qmp.balloon'
EXAMPLE = 'docs/awx/execution-environment.yml'

# Platform profiles as bindep derives them on the example's base image and on Debian.
PLATFORMS = {
    'el': ['platform:centos', 'platform:centos-9', 'platform:redhat', 'platform:rpm'],
    'debian': ['platform:debian', 'platform:debian-12', 'platform:dpkg'],
}
# What bindep.txt must give, per bindep profile and platform. ansible-builder installs
# "default" into the image, "compile" into its builder stage only, and "epel" (CentOS) from
# EPEL; the hypervisor profiles are for `bindep hypervisor` on a hypervisor, never the EE.
EXPECTED_BINDEP = {
    ('default', 'el'): ['openssh-clients'],
    ('default', 'debian'): ['openssh-client'],
    ('compile', 'el'): [],
    ('compile', 'debian'): [],
    ('epel', 'el'): [],
    ('hypervisor', 'el'): [],
    ('hypervisor', 'debian'): ['python3-venv'],
    ('hypervisor-libvirt', 'el'): ['python3-libvirt'],
    ('hypervisor-libvirt', 'debian'): ['python3-libvirt'],
}
EXPECTED_PROFILES = ['default', 'hypervisor', 'hypervisor-libvirt']

# galaxy-importer warnings that are understood and accepted (regular expressions, with the
# reason). None at present: every warning fails the suite.
ALLOWED_WARNINGS = ()

ANNOTATION = '  # from collection %s' % COLLECTION


class CheckFailed(Exception):
    """A check did not hold; the message says which."""


def say(message):
    """Print one line at once (the suite's log interleaves our output with the tools')."""
    sys.stdout.write(message + '\n')
    sys.stdout.flush()


def tool(name):
    """Path of a command of this venv."""
    return os.path.join(os.path.dirname(sys.executable), name)


def run(command, cwd=None, env=None):
    """Run a command, echo its output, return (status, output)."""
    say('$ ' + ' '.join(command))
    process = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    output = process.stdout.decode('utf-8', 'replace')
    sys.stdout.write(output)
    sys.stdout.flush()
    return process.returncode, output


def run_ok(command, what, cwd=None, env=None):
    """Run a command that must succeed; return its output."""
    status, output = run(command, cwd=cwd, env=env)
    if status != 0:
        raise CheckFailed('%s exited with status %d' % (what, status))
    return output


def load_yaml(path):
    """Load one YAML file."""
    with open(path, encoding='utf-8') as stream:
        return yaml.safe_load(stream)


def requirement_lines(path):
    """Requirement lines of a pip requirements file, without comments and blank lines."""
    lines = []
    with open(path, encoding='utf-8') as stream:
        for line in stream:
            line = re.sub(r'(^|\s+)#.*$', '', line).strip()
            if line:
                lines.append(line)
    return lines


def tested_core_versions(source):
    """The ansible-core versions of the test venvs (ANSIBLE_CORE_X_Y=VERSION in scripts/pins.sh)."""
    with open(os.path.join(source, 'scripts', 'pins.sh'), encoding='utf-8') as stream:
        return re.findall(r'^ANSIBLE_CORE_[0-9_]+=([0-9][0-9.]*)\s*$', stream.read(), re.MULTILINE)


def exact_pin(line, what):
    """Check that a requirement is a PEP 508 requirement pinned with a single ==; return it."""
    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        raise CheckFailed('%s: %r is not a PEP 508 requirement (%s)' % (what, line, error)) from error
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1 or specifiers[0].operator != '==':
        raise CheckFailed('%s: %r is not pinned to one exact version (==)' % (what, line))
    return requirement


def check_containerfile(source, context):
    """The example's Containerfile pins ansible-core (a tested version) and ansible-runner."""
    with open(os.path.join(context, 'Containerfile'), encoding='utf-8') as stream:
        containerfile = stream.read()
    match = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile, re.MULTILINE)
    if not match:
        raise CheckFailed('Containerfile: no ARG ANSIBLE_INSTALL_REFS (ansible-core, ansible-runner)')
    pins = {}
    for ref in match.group(1).split():
        requirement = exact_pin(ref, 'Containerfile ANSIBLE_INSTALL_REFS')
        pins[requirement.name] = list(requirement.specifier)[0].version
    tested = tested_core_versions(source)
    if pins.get('ansible-core') not in tested:
        raise CheckFailed('%s: ansible-core %s is not a version that the test venvs use (scripts/pins.sh: %s)'
                          % (EXAMPLE, pins.get('ansible-core'), ', '.join(tested)))
    if 'ansible-runner' not in pins:
        raise CheckFailed('%s: ansible-runner is not pinned' % EXAMPLE)
    say('ok: Containerfile installs ansible-core==%s (tested: %s) and ansible-runner==%s'
        % (pins['ansible-core'], ', '.join(tested), pins['ansible-runner']))


def check_context_requirements(source, context):
    """The context's requirements.yml pins qmp.balloon to the version in galaxy.yml."""
    version = str(load_yaml(os.path.join(source, 'galaxy.yml'))['version'])
    requirements = load_yaml(os.path.join(context, '_build', 'requirements.yml')) or {}
    entries = [entry for entry in requirements.get('collections') or []
               if isinstance(entry, dict) and entry.get('name') == COLLECTION]
    if len(entries) != 1:
        raise CheckFailed('context requirements.yml: expected one entry for %s, found %d' % (COLLECTION, len(entries)))
    pinned = str(entries[0].get('version', '')).lstrip('=')
    if pinned != version:
        raise CheckFailed('docs/awx/requirements.yml pins %s %r; galaxy.yml says %s (update the example with the release)'
                          % (COLLECTION, entries[0].get('version'), version))
    say('ok: the context installs %s %s, the version of galaxy.yml' % (COLLECTION, version))


def introspect(context, artifact, work):
    """Install the tarball as the galaxy stage would and run the builder stage's introspection."""
    collections = os.path.join(work, 'usr', 'share', 'ansible', 'collections')
    run_ok([tool('ansible-galaxy'), 'collection', 'install', '--offline', '-p', collections, artifact], 'ansible-galaxy collection install')
    pip_file = os.path.join(work, 'introspect', 'requirements.txt')
    bindep_file = os.path.join(work, 'introspect', 'bindep.txt')
    command = [sys.executable, os.path.join(context, '_build', 'scripts', 'introspect.py'), 'introspect', collections,
               '--write-pip=' + pip_file, '--write-bindep=' + bindep_file]
    # The user's own files, when the example has any, go in as the Containerfile passes them.
    for option, name in (('--user-pip=', 'requirements.txt'), ('--user-bindep=', 'bindep.txt')):
        if os.path.exists(os.path.join(context, '_build', name)):
            command.append(option + os.path.join(context, '_build', name))
    output = run_ok(command, 'the introspection (introspect.py; is meta/execution-environment.yml right?)')
    for complaint in ('Expected requirements file not present', 'non-PEP508'):
        if complaint in output:
            raise CheckFailed('introspection: %s' % complaint)
    for path in (pip_file, bindep_file):
        if not os.path.exists(path):
            raise CheckFailed('introspection wrote no %s: is meta/execution-environment.yml in the tarball?'
                              % os.path.basename(path))
    with open(pip_file, encoding='utf-8') as stream:
        pip_lines = [line for line in stream.read().splitlines() if line.strip()]
    with open(bindep_file, encoding='utf-8') as stream:
        bindep_lines = [line for line in stream.read().splitlines() if line.strip()]
    return pip_lines, bindep_lines, bindep_file


def strip_annotation(lines, what):
    """The requirement of each introspected line, which must come from this collection."""
    result = []
    for line in lines:
        if not line.endswith(ANNOTATION):
            raise CheckFailed('introspected %s line %r does not come from %s' % (what, line, COLLECTION))
        result.append(line[:-len(ANNOTATION)])
    return result


def check_python(source, pip_lines):
    """Introspected Python requirements: exactly controller.txt + hypervisor.txt, exact pins."""
    expected = []
    for name in ('controller.txt', 'hypervisor.txt'):
        expected += requirement_lines(os.path.join(source, 'requirements', name))
    found = strip_annotation(pip_lines, 'Python')
    if sorted(found) != sorted(expected):
        raise CheckFailed('introspected Python requirements %s; expected %s (requirements/controller.txt and hypervisor.txt)'
                          % (found, expected))
    for line in found:
        exact_pin(line, 'introspected Python requirement')
    say('ok: the EE gets the Python requirements %s' % ', '.join(found))


def check_system(source, bindep_lines, bindep_file):
    """Introspected system requirements: bindep.txt's lines, resolving as EXPECTED_BINDEP says."""
    expected = requirement_lines(os.path.join(source, 'bindep.txt'))
    found = strip_annotation(bindep_lines, 'system')
    if found != expected:
        raise CheckFailed('introspected system requirements %s; expected the lines of bindep.txt %s' % (found, expected))
    with open(bindep_file, encoding='utf-8') as stream:
        try:
            depends = Depends(stream.read())
        except DependsException as error:
            raise CheckFailed('bindep.txt: %s' % error) from error
    profiles = sorted(depends.profiles())
    if profiles != EXPECTED_PROFILES:
        raise CheckFailed('bindep.txt uses the profiles %s; expected %s' % (profiles, EXPECTED_PROFILES))
    wrong = []
    for (profile, platform), packages in sorted(EXPECTED_BINDEP.items()):
        resolved = sorted(rule[0] for rule in depends.active_rules([profile] + PLATFORMS[platform]))
        say('bindep %-18s on %-6s -> %s' % (profile, platform, ' '.join(resolved) or '(nothing)'))
        if resolved != sorted(packages):
            wrong.append('%s on %s: %s, expected %s' % (profile, platform, resolved, sorted(packages)))
    if wrong:
        raise CheckFailed('bindep.txt resolves differently from EXPECTED_BINDEP in scripts/ee-check.py: ' + '; '.join(wrong))
    # As the build's assemble script calls it: status 2 means the file does not parse.
    for extra in ([], ['-b', 'compile']):
        status, dummy = run([tool('bindep'), '-f', bindep_file, '-l', 'newline'] + extra)
        if status not in (0, 1):
            raise CheckFailed('bindep could not read the introspected bindep.txt (status %d)' % status)
    say('ok: the EE gets the system requirements %s' % ', '.join(found))


def check_ee(args):
    """The ee sub-command."""
    context = os.path.join(args.work, 'context')
    run_ok([tool('ansible-builder'), 'create', '-f', os.path.join(args.source, EXAMPLE), '-c', context,
            '--output-filename', 'Containerfile'], 'ansible-builder create')
    check_containerfile(args.source, context)
    check_context_requirements(args.source, context)
    pip_lines, bindep_lines, bindep_file = introspect(context, args.artifact, args.work)
    check_python(args.source, pip_lines)
    check_system(args.source, bindep_lines, bindep_file)


def check_importer_log(output):
    """Errors and warnings of galaxy-importer's log; fails on errors and unexplained warnings."""
    errors = [line for line in output.splitlines() if line.startswith('ERROR:')]
    warnings = [line for line in output.splitlines() if line.startswith('WARNING:')]
    unexplained = [line for line in warnings if not any(re.search(pattern, line) for pattern, dummy in ALLOWED_WARNINGS)]
    say('galaxy-importer: %d errors, %d warnings (%d allowed)' % (len(errors), len(warnings), len(warnings) - len(unexplained)))
    if errors or unexplained:
        raise CheckFailed('galaxy-importer reported:\n  ' + '\n  '.join(errors + unexplained))


def check_importer_result(source, result):
    """The importer's result holds every module (documented), role and docs page; metadata agrees."""
    galaxy = load_yaml(os.path.join(source, 'galaxy.yml'))
    runtime = load_yaml(os.path.join(source, 'meta', 'runtime.yml'))
    problems = []
    if result['metadata']['version'] != str(galaxy['version']):
        problems.append('version %s, galaxy.yml %s' % (result['metadata']['version'], galaxy['version']))
    if result['requires_ansible'] != runtime['requires_ansible']:
        problems.append('requires_ansible %s, meta/runtime.yml %s' % (result['requires_ansible'], runtime['requires_ansible']))
    documented = {(item['content_type'], item['content_name']): item for item in result['docs_blob']['contents']}
    for path in sorted(glob.glob(os.path.join(source, 'plugins', 'modules', '*.py'))):
        name = os.path.basename(path)[:-3]
        if name != '__init__' and not (documented.get(('module', name)) or {}).get('doc_strings'):
            problems.append('module %s missing or without documentation' % name)
    for path in sorted(glob.glob(os.path.join(source, 'roles', '*', ''))):
        name = os.path.basename(os.path.dirname(path))
        if not (documented.get(('role', name)) or {}).get('readme_html'):
            problems.append('role %s missing or without README' % name)
    pages = sorted(item['name'] for item in result['docs_blob']['documentation_files'])
    for path in sorted(glob.glob(os.path.join(source, 'docs', '*.md'))):
        if os.path.basename(path) not in pages:
            problems.append('docs/%s not among the documentation pages' % os.path.basename(path))
    if not result['docs_blob']['collection_readme'].get('html'):
        problems.append('no README')
    if problems:
        raise CheckFailed('galaxy-importer result: ' + '; '.join(problems))
    say('ok: galaxy-importer result: %d contents, documentation pages %s, requires_ansible %s'
        % (len(result['contents']), ', '.join(pages), result['requires_ansible']))


def check_importer(args):
    """The importer sub-command."""
    env = dict(os.environ)
    env.update({
        'GALAXY_IMPORTER_CONFIG': os.path.abspath(args.config),
        # Scratch space of this run only (the configuration's defaults point at ~/.ansible/tmp).
        'GALAXY_IMPORTER_TMP_ROOT_DIR': args.work,
        'GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP': os.path.join(args.work, 'ansible-tmp'),
        # galaxy-importer finds ansible-doc and ansible-lint on PATH: this venv's.
        'PATH': os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', ''),
    })
    os.makedirs(os.path.join(args.work, 'ansible-tmp'), exist_ok=True)
    # It writes importer_result.json into its working directory.
    status, output = run([sys.executable, '-m', 'galaxy_importer.main', os.path.abspath(args.artifact)], cwd=args.work, env=env)
    check_importer_log(output)
    result_path = os.path.join(args.work, 'importer_result.json')
    if status != 0 or not os.path.exists(result_path):
        raise CheckFailed('galaxy-importer failed (status %d)' % status)
    with open(result_path, encoding='utf-8') as stream:
        check_importer_result(args.source, json.load(stream))


def main(argv):
    """Parse the arguments and run one sub-command; exit 1 on a failed check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('command', choices=['ee', 'importer'])
    parser.add_argument('--source', required=True, help='the collection (the copy that was built)')
    parser.add_argument('--artifact', required=True, help='the tarball built from it')
    parser.add_argument('--work', required=True, help='an empty scratch directory')
    parser.add_argument('--config', help='galaxy-importer.cfg (importer only)')
    args = parser.parse_args(argv)
    try:
        if args.command == 'ee':
            check_ee(args)
        else:
            if not args.config:
                parser.error('importer needs --config')
            check_importer(args)
    except CheckFailed as error:
        sys.stderr.write('ee-check: %s\n' % error)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
