from autoresearch.cli._app import main

main()
