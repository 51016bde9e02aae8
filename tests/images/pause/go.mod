module github.com/leadmaster/whatsapp-operator/tests/images/pause

go 1.22
