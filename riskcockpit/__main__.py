from riskcockpit.cli import main

main()
