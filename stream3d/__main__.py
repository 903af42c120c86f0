from stream3d.cli import main

main()
