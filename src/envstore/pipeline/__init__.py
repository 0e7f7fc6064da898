"""The build pipeline, run in a child process per build: solve → lock → install → artifacts.

The parent (``envstore.jobs``) owns the database: it writes a :class:`BuildRequest` to the
build's work directory, starts ``python -m envstore.pipeline.runner REQUEST`` in its own process
group, streams the child's stdout into the build log, and publishes the :class:`BuildResult`
(or records the :class:`BuildFailureInfo`) the child leaves behind.
"""
