from rekko.cli import run

run()
