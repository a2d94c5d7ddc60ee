"""SCSI: the LSI 53C895A controller, its SCRIPTS processor, and the targets on its bus."""
