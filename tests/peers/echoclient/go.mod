module mini-netpoll/tests/peers/echoclient

go 1.19
