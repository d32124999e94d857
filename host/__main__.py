from dreamtray.cli import main

main()
