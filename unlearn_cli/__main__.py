from unlearn_cli.cli.app import main

main()
