module github.com/dmgrid/dmgrid

go 1.26

require github.com/beevik/etree v1.8.1 // indirect
