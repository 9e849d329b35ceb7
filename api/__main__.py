from api.serve import main

main()
