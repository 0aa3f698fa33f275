from twin_ops.cli import app

app()
