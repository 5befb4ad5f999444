module mnp/gomicro

go 1.19
