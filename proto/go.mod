module github.com/dmgrid/dmgrid/proto

go 1.26
