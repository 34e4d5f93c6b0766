from trailsight.cli import main

main()
