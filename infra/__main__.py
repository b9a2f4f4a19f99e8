from authbus.infra.cli import main

main()
