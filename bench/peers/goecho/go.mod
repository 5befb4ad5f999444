module mini-netpoll/bench/peers/goecho

go 1.19
