from bootstrap.main import main

main()
