from deploy_guard.cli import main

main()
