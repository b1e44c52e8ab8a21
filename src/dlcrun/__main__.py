from dlcrun.cli import main

main()
