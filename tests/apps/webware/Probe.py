"""Test servlet for mod_rwsgi's Webware tests: reports, as JSON, how the
application runs (user, permissions of its working dir, request paths, the
WSGI environ, the mod_wsgi daemon settings) and echoes submitted fields."""

import grp
import json
import os
import pwd
import sys

from Page import Page

WORK_SUBDIRS = ('', 'Cache', 'Configs', 'ErrorMsgs', 'Logs', 'MyContext',
                'Scripts', 'Sessions', 'Static')


class Probe(Page):

    def writeHTML(self):
        request = self.request()
        app = self.application()
        environ = request.environ()
        workDir = app.serverSidePath()
        try:
            import mod_wsgi
            daemon = {'process_group': mod_wsgi.process_group,
                      'threads_per_process': mod_wsgi.threads_per_process}
        except ImportError:
            daemon = None
        session = self.session()
        visits = session.value('probe_visits', 0) + 1
        session.setValue('probe_visits', visits)
        report = {
            'user': pwd.getpwuid(os.geteuid()).pw_name,
            'group': grp.getgrgid(os.getegid()).gr_name,
            'pid': os.getpid(),
            'prefix': sys.prefix,
            'workDir': workDir,
            'writable': {d or '.': os.access(os.path.join(workDir, d), os.W_OK)
                         for d in WORK_SUBDIRS},
            'readable': {d or '.': os.access(os.path.join(workDir, d), os.R_OK)
                         for d in WORK_SUBDIRS},
            'servletPath': request.servletPath(),
            'contextName': request.contextName(),
            'uri': request.uri(),
            'SCRIPT_NAME': environ.get('SCRIPT_NAME'),
            'PATH_INFO': environ.get('PATH_INFO'),
            'multithread': environ.get('wsgi.multithread'),
            'multiprocess': environ.get('wsgi.multiprocess'),
            'daemon': daemon,
            'visits': visits,
            'method': request.method(),
            'fields': {k: request.field(k) for k in request.fields()},
        }
        self.response().setHeader('Content-Type', 'application/json')
        self.write(json.dumps(report))
